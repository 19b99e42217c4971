"""Scale-out, proven with processes: two API instances and a worker on PostgreSQL + Redis + Chroma.

Every claim of the README's "Several instances" section, one process tree: the instances share
nothing but the database, Redis and the Chroma server (each has its own data directory), the
API processes run no jobs (the worker does), and one of them dies by ``kill -9`` mid-way.
One test, because each process costs seconds of imports.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import empty_service_tables
from tests.fakes.openai_server import FakeOpenAI
from tests.support.processes import Fleet, ServiceProcess
from tests.support.service import ServiceFactory

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

REDIS_URL = "redis://127.0.0.1:6379/0"
ORG_CACHE_SECONDS = 0.5
TEXT = "\n\n".join(
    f"Section {i}. The VPN client is GlobalProtect zebra. " + "lorem ipsum dolor " * 45
    for i in range(3)
)


@pytest.fixture
def fleet(
    tmp_path: Path, fake_openai: FakeOpenAI, pg_url: str, chroma_server: str
) -> Iterator[Fleet]:
    """Shared settings for every process: one PostgreSQL, one Redis prefix, one Chroma server."""
    empty_service_tables(ServiceFactory(tmp_path, fake_openai.base_url, pg_url))
    prefix = f"ahc-scale-{uuid.uuid4().hex[:8]}:"
    env = {
        "AHC_DATABASE_URL": pg_url,
        "AHC_REDIS_URL": REDIS_URL,
        "AHC_REDIS_PREFIX": prefix,
        "AHC_CHROMA_URL": chroma_server,
        "AHC_JOB_QUEUE": "procrastinate",
        "AHC_JOB_SCHEMA": f"ahc_jobs_{uuid.uuid4().hex[:8]}",
        "AHC_JOB_RUN_IN_API": "false",
        "AHC_JOB_STALLED_SECONDS": "2",
        "AHC_JOB_SHUTDOWN_SECONDS": "1",
        "AHC_KNOWLEDGE_INLINE_MAX_BYTES": "10",
        "AHC_EMBEDDING_MODEL": "text-embedding-3-small",
        "AHC_ORG_CACHE_SECONDS": str(ORG_CACHE_SECONDS),
        "AHC_OPENAI_API_KEY": "sk-service-key",
        "AHC_OPENAI_BASE_URL": fake_openai.base_url,
        "AHC_LOCAL_MODEL_BASE_URL": fake_openai.base_url,
        "AHC_UPSTREAM_BACKOFF_SECONDS": "0.01",
        "AHC_LOG_LEVEL": "WARNING",
    }
    fleet = Fleet(tmp_path, env)
    yield fleet
    fleet.close()
    client = redis.Redis.from_url(REDIS_URL)
    if keys := client.keys(f"{prefix}*"):
        client.delete(*keys)


def test_two_instances_and_a_worker_share_every_state(
    fleet: Fleet, fake_openai: FakeOpenAI
) -> None:
    one = fleet.serve("api-1")
    two = fleet.serve("api-2")

    # A thread begun on one instance continues on the other, with its history.
    first = chat(one, thread_id="t-1", messages=[user("My name is Mina.")])
    assert first.status_code == 200, first.text
    second = chat(two, thread_id="t-1", messages=[user("What is my name?")])
    assert second.status_code == 200, second.text
    sent = fake_openai.requests[-1].body["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == [
        "My name is Mina.",
        "What is my name?",
    ]
    thread = httpx.get(f"{one.api}/chat/threads/t-1", headers=one.headers()).json()
    assert [m["role"] for m in thread["messages"]] == ["user", "assistant", "user", "assistant"]

    # Limits hold exactly across both instances under concurrent load.
    limited = httpx.put(
        f"{one.api}/limits",
        headers=one.headers("org-l", "boss", "admin"),
        json={"requests_per_minute": 10},
    )
    assert limited.status_code == 200, limited.text
    time.sleep(ORG_CACHE_SECONDS + 0.2)  # the documented staleness of an instance's org cache
    fake_openai.delay_next(0.05, times=100)

    def call(i: int) -> int:
        instance = one if i % 2 else two
        return chat(instance, org="org-l", messages=[user(f"hi {i}")]).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(call, range(30)))
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses

    # A label moved on one instance is used by the other at once (labels are never cached).
    for text in ("Version one says {x}.", "Version two says {x}."):
        created = httpx.post(
            f"{one.api}/prompt-templates",
            headers=one.headers(),
            json={"name": "motto", "messages": [{"role": "user", "content": text}]},
        )
        assert created.status_code == 201, created.text
    for version, expected in ((1, "echo: Version one says hi."), (2, "echo: Version two says hi.")):
        moved = httpx.put(
            f"{one.api}/prompt-templates/motto/labels/production",
            headers=one.headers(),
            json={"version": version},
        )
        assert moved.status_code == 200, moved.text
        used = chat(two, template={"name": "motto", "variables": {"x": "hi"}})
        assert used.json()["choices"][0]["message"]["content"] == expected

    # An ingestion survives the death of the process that accepted it.
    accepted = upload(one, "vpn.txt", TEXT)
    assert accepted["status"] == "processing"  # queued: no API process runs jobs
    one.kill()
    fleet.worker("worker-1", "--concurrency", "2")
    wait_until(lambda: document(two, accepted["id"])["status"] == "ready", 60)
    hits = search(two, "GlobalProtect zebra")
    assert {h["document_id"] for h in hits} == {accepted["id"]}
    assert len(hits) == document(two, accepted["id"])["chunks"]  # every chunk once

    # A re-embedding swap started on one instance is seen by the other.
    three = fleet.serve("api-3")
    started = httpx.post(
        f"{three.api}/knowledge/reembed",
        headers=three.headers(role="admin"),
        json={"embedding_model": "local-use"},
    )
    assert started.status_code == 202, started.text

    def swapped() -> bool:
        rows = httpx.get(f"{two.api}/knowledge/collections", headers=two.headers()).json()
        return bool(rows["data"][0]["embedding_model"] == "local-use")

    wait_until(swapped, 120)
    hits = search(two, "Which VPN client do we use?", k=1)
    assert hits[0]["document_id"] == accepted["id"]

    # Usage from every instance (the dead one's included) is in the one shared ledger.
    def counted() -> bool:
        report = httpx.get(f"{two.api}/usage", headers=two.headers("org-l", "boss", "admin")).json()
        return bool(report["totals"]["requests"] == 10)

    wait_until(counted, 10)
    mine = httpx.get(f"{three.api}/usage", headers=three.headers()).json()
    assert mine["totals"]["requests"] >= 4  # two thread turns + two template uses


# --- helpers ------------------------------------------------------------------------------


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def chat(instance: ServiceProcess, *, org: str = "org-a", **body: Any) -> httpx.Response:
    body.setdefault("model", "gpt-4o-mini")
    return httpx.post(
        f"{instance.api}/chat/completions", headers=instance.headers(org), json=body, timeout=30
    )


def upload(instance: ServiceProcess, name: str, text: str) -> dict[str, Any]:
    response = httpx.post(
        f"{instance.api}/knowledge/documents",
        headers=instance.headers(),
        files=[("files", (name, text.encode(), "text/plain"))],
        timeout=30,
    )
    assert response.status_code in (201, 202), response.text
    return dict(response.json()["documents"][0])


def document(instance: ServiceProcess, doc_id: str) -> dict[str, Any]:
    response = httpx.get(f"{instance.api}/knowledge/documents/{doc_id}", headers=instance.headers())
    return dict(response.json())


def search(instance: ServiceProcess, query: str, k: int = 20) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{instance.api}/knowledge/search",
        headers=instance.headers(),
        json={"query": query, "mode": "vector", "k": k},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def wait_until(check: Callable[[], bool], seconds: float) -> None:
    """Poll ``check`` until it holds (the work happens in other processes)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
