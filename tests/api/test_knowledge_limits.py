"""Embedding calls count against the org's token and cost limits like chat calls.

Uploads and searches are refused (429, nothing stored) once a limit is used up; accepted
ingestion adds its embedding tokens to the counters as it embeds, never half-refused.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import httpx
import redis

from core.tokenizer import count_text_tokens
from tests.support.knowledge import search, upload

TEXT = (
    "The VPN client is GlobalProtect. Install it from the software portal, then sign in "
    "with your company account. Support answers on the #it-help channel."
)


def put_limits(service, **limits) -> None:
    response = httpx.put(
        f"{service.api}/limits", headers=service.headers("org-a", "boss", "admin"), json=limits
    )
    assert response.status_code == 200, response.text


def tokens_today(client: redis.Redis, prefix: str) -> int:
    day = datetime.now(UTC).strftime("%Y%m%d")
    value = client.get(f"{prefix}org:org-a:tokens_per_day:{day}")
    return int(value or 0)


def documents(service) -> int:
    response = httpx.get(f"{service.api}/knowledge/documents", headers=service.headers("org-a"))
    return int(response.json()["count"])


def test_ingestion_and_search_embeddings_are_counted(services) -> None:
    prefix = f"ahc-test-{uuid.uuid4().hex[:8]}:"
    service = services.start(redis_url="redis://127.0.0.1:6379/0", redis_prefix=prefix)
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        put_limits(service, tokens_per_day=1_000_000)
        created = upload(service, [("vpn.txt", TEXT.encode(), "text/plain")])
        assert created.status_code == 201, created.text
        assert created.json()["documents"][0]["status"] == "ready"
        time.sleep(0.2)  # settlements are applied off the request path
        # The local embedder bills what OpenAI would: the chunk's tiktoken count.
        ingested = tokens_today(client, prefix)
        assert ingested == count_text_tokens(TEXT, "text-embedding-3-small")

        assert search(service, "How do I install the VPN?", mode="vector").status_code == 200
        time.sleep(0.2)
        query_tokens = count_text_tokens("How do I install the VPN?", "text-embedding-3-small")
        assert tokens_today(client, prefix) == ingested + query_tokens  # settled, not held

        # BM25 embeds nothing: a keyword search costs no tokens.
        assert search(service, "GlobalProtect", mode="keyword").status_code == 200
        time.sleep(0.2)
        assert tokens_today(client, prefix) == ingested + query_tokens
    finally:
        keys = client.keys(f"{prefix}*")
        if keys:
            client.delete(*keys)


def test_used_up_limit_refuses_uploads_and_searches(service) -> None:
    put_limits(service, tokens_per_day=10)
    # Admitted (nothing used yet); its ingestion is finished in full and counted: ~35 tokens.
    assert upload(service, [("vpn.txt", TEXT.encode(), "text/plain")]).status_code == 201
    time.sleep(0.2)
    before = documents(service)

    denied = upload(service, [("more.txt", b"Another document about printers.", "text/plain")])
    assert denied.status_code == 429, denied.text
    error = denied.json()["error"]
    assert (error["code"], error["limit"], error["scope"]) == (
        "limit_exceeded",
        "tokens_per_day",
        "org",
    )
    assert int(denied.headers["Retry-After"]) >= 1
    assert documents(service) == before  # nothing half-stored

    refused = search(service, "How do I install the VPN?")
    assert refused.status_code == 429 and refused.json()["error"]["limit"] == "tokens_per_day"
    # Another org is not affected.
    other = search(service, "How do I install the VPN?", org="org-b")
    assert other.status_code == 200

    put_limits(service, tokens_per_day=None)  # lifted: effective at once
    assert search(service, "How do I install the VPN?").status_code == 200
