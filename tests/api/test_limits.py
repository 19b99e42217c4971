"""Per-org and per-user limits: admin-only writes, 429 naming the limit, exact caps."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService


def put(service: RunningService, role: str = "admin", **limits: Any) -> httpx.Response:
    return httpx.put(
        f"{service.api}/limits", headers=service.headers("org-a", "boss", role), json=limits
    )


def chat(service: RunningService, user: str = "alice", **body: Any) -> httpx.Response:
    payload = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello there"}],
        **body,
    }
    return httpx.post(
        f"{service.api}/chat/completions",
        headers=service.headers("org-a", user),
        json=payload,
        timeout=30,
    )


def test_admin_sets_limits_member_reads_them(service: RunningService) -> None:
    assert put(service, role="member", requests_per_minute=5).status_code == 403
    response = put(service, requests_per_minute=5, cost_usd_per_month=12.5)
    assert response.status_code == 200, response.text
    assert response.json()["requests_per_minute"] == 5 and response.json()["user_id"] is None
    assert put(service, tokens_per_day=1000, user_id="bob").status_code == 200
    member = httpx.get(f"{service.api}/limits", headers=service.headers("org-a", "alice")).json()
    assert [row["user_id"] for row in member["data"]] == [None]  # not bob's
    admin = httpx.get(
        f"{service.api}/limits", headers=service.headers("org-a", "boss", "admin")
    ).json()
    assert {row["user_id"] for row in admin["data"]} == {None, "bob"}
    assert admin["data"][0]["cost_usd_per_month"] == 12.5
    other = httpx.get(
        f"{service.api}/limits", headers=service.headers("org-b", "x", "admin")
    ).json()
    assert other["data"] == []


@pytest.mark.parametrize(
    "body",
    [{"requests_per_minute": -1}, {"tokens_per_day": "many"}, {"org_id": "org-b"}, {"user_id": ""}],
)
def test_bad_limits_are_422(service: RunningService, body: dict) -> None:
    assert put(service, **body).status_code == 422


def test_requests_per_minute_answers_429_naming_the_limit(service: RunningService) -> None:
    put(service, requests_per_minute=2)
    assert chat(service).status_code == 200
    assert chat(service).status_code == 200
    denied = chat(service)
    assert denied.status_code == 429
    error = denied.json()["error"]
    assert (error["code"], error["limit"], error["scope"]) == (
        "limit_exceeded",
        "requests_per_minute",
        "org",
    )
    assert "requests_per_minute" in error["message"]
    assert 1 <= int(denied.headers["Retry-After"]) <= 60
    put(service, requests_per_minute=None)
    assert chat(service).status_code == 200  # null = unlimited, effective at once


def test_per_user_limit_leaves_colleagues_alone(service: RunningService) -> None:
    put(service, requests_per_minute=1, user_id="alice")
    assert chat(service, user="alice").status_code == 200
    denied = chat(service, user="alice")
    assert denied.status_code == 429 and denied.json()["error"]["scope"] == "user"
    assert chat(service, user="bob").status_code == 200


def test_token_cap_reserves_worst_case_and_settles_to_real_use(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    # The fake answers "echo: hello there" (3 tokens) for ~8 prompt tokens.
    put(service, tokens_per_day=100)
    assert chat(service, max_tokens=200).status_code == 429  # worst case > 100: refused upfront
    assert chat(service, max_tokens=50).status_code == 200
    # Settled to ~10 real tokens, not the 50+ reserved: many more calls fit.
    time.sleep(0.1)
    assert [chat(service, max_tokens=50).status_code for _ in range(5)] == [200] * 5


def test_unset_max_tokens_is_capped_when_limited(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    put(service, tokens_per_month=100_000)
    assert chat(service).status_code == 200
    assert fake_openai.requests[-1].body["max_tokens"] == 4096  # AHC_LIMITS_DEFAULT_MAX_TOKENS
    put(service, tokens_per_month=None)
    chat(service)
    assert "max_tokens" not in fake_openai.requests[-1].body


def test_cost_cap(service: RunningService) -> None:
    # gpt-4o: $2.50 / $10 per 1M. max_tokens=100 worst case ≈ $0.00102.
    put(service, cost_usd_per_month=0.001)
    denied = chat(service, model="gpt-4o", max_tokens=100)
    assert denied.status_code == 429 and denied.json()["error"]["limit"] == "cost_usd_per_month"
    assert chat(service, model="gpt-4o", max_tokens=10).status_code == 200


def test_streams_and_threads_and_runnables_are_limited(service: RunningService) -> None:
    put(service, requests_per_minute=3)
    assert chat(service, stream=True).status_code == 200
    assert chat(service, thread_id="lim-1").status_code == 200
    invoke = httpx.post(
        f"{service.url}/runnables/completion/invoke",
        headers=service.headers(),
        json={"input": {"input": "x"}},
    )
    assert invoke.status_code == 200
    assert chat(service, stream=True).status_code == 429
    again = httpx.post(
        f"{service.url}/runnables/completion/invoke",
        headers=service.headers(),
        json={"input": {"input": "x"}},
    )
    assert again.status_code == 429


def test_two_instances_share_exact_limits_through_redis(services, fake_openai: FakeOpenAI) -> None:
    prefix = f"ahc-test-{uuid.uuid4().hex[:8]}:"
    common = {
        "redis_url": "redis://127.0.0.1:6379/0",
        "redis_prefix": prefix,
        "org_cache_seconds": 0,
    }
    first = services.start(**common)
    second = services.start(**common)
    put(first, requests_per_minute=10)
    fake_openai.delay_next(0.05, times=100)

    def call(i: int) -> int:
        return chat(first if i % 2 else second).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(call, range(30)))
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 20
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = client.keys(f"{prefix}*")
    assert keys  # the counters live in Redis, not in either process
    client.delete(*keys)


def test_large_limits_are_stored(db_services) -> None:
    service = db_services.start()
    response = put(
        service, requests_per_minute=10**8, tokens_per_month=10**12, cost_usd_per_month=10**8
    )
    assert response.status_code == 200, response.text
    assert response.json()["tokens_per_month"] == 10**12
