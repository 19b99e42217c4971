"""Exact-match response cache: deterministic repeats cost no upstream call, per org only."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import openai

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService


def ask(service: RunningService, org: str = "org-a", **body: Any) -> httpx.Response:
    payload = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "what is 2+2"}],
        **body,
    }
    return httpx.post(
        f"{service.api}/chat/completions", headers=service.headers(org, "alice"), json=payload
    )


def upstream_calls(fake: FakeOpenAI) -> int:
    return sum(r.path.endswith("/chat/completions") for r in fake.requests)


def test_temperature_zero_is_cached(service: RunningService, fake_openai: FakeOpenAI) -> None:
    first = ask(service, temperature=0)
    second = ask(service, temperature=0)
    assert first.json() == second.json()
    assert upstream_calls(fake_openai) == 1
    ask(service, temperature=0, max_tokens=5)  # other parameters: another entry
    assert upstream_calls(fake_openai) == 2
    ask(service, temperature=0.7)  # not deterministic: never cached
    ask(service, temperature=0.7)
    assert upstream_calls(fake_openai) == 4


def test_opt_in_and_bypass(service: RunningService, fake_openai: FakeOpenAI) -> None:
    ask(service, cache=True)
    ask(service, cache=True)
    assert upstream_calls(fake_openai) == 1
    ask(service, temperature=0, cache=False)
    ask(service, temperature=0, cache=False)
    assert upstream_calls(fake_openai) == 3
    assert "cache" not in fake_openai.requests[-1].body  # our extension never goes upstream


def test_never_shared_across_orgs(service: RunningService, fake_openai: FakeOpenAI) -> None:
    ask(service, org="org-a", temperature=0)
    ask(service, org="org-b", temperature=0)
    assert upstream_calls(fake_openai) == 2


def test_streams_are_cached_and_replayed(service: RunningService, fake_openai: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=service.api, api_key=service.token(), max_retries=0)

    def stream() -> tuple[str, Any]:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "tell me a b c"}],
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks[
            -1
        ].usage

    text, usage = stream()
    time.sleep(0.05)
    replayed, replayed_usage = stream()
    assert replayed == text == "echo: tell me a b c"
    assert replayed_usage is not None and replayed_usage.total_tokens == usage.total_tokens
    assert upstream_calls(fake_openai) == 1
    # A plain request with the same content hits the entry the stream left.
    plain = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "tell me a b c"}], temperature=0
    )
    assert plain.choices[0].message.content == text
    assert upstream_calls(fake_openai) == 1


def test_hits_are_accounted_as_cached_and_free(service: RunningService) -> None:
    ask(service, model="gpt-4o", temperature=0)
    ask(service, model="gpt-4o", temperature=0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = httpx.get(f"{service.api}/usage", headers=service.headers()).json()
        if body["totals"]["requests"] >= 2:
            break
        time.sleep(0.05)
    assert body["totals"]["requests"] == 2
    assert body["totals"]["cache_hits"] == 1
    single_cost = (6 * 2.5 + 4 * 10) / 1e6  # the miss only (6 prompt, 4 completion tokens)
    assert abs(body["totals"]["cost_usd"] - single_cost) < 1e-6


def test_entries_are_shared_between_instances(services, fake_openai: FakeOpenAI) -> None:
    first = services.start()
    second = services.start()  # same SQLite database
    ask(first, temperature=0)
    time.sleep(0.2)  # the shared tier is written in the background
    ask(second, temperature=0)
    assert upstream_calls(fake_openai) == 1


def test_entries_are_shared_through_redis(services, fake_openai: FakeOpenAI) -> None:
    common = {
        "redis_url": "redis://127.0.0.1:6379/0",
        "redis_prefix": f"ahc-test-{uuid.uuid4().hex[:8]}:",
    }
    first = services.start(**common)
    second = services.start(**common)
    ask(first, temperature=0)
    time.sleep(0.2)
    ask(second, temperature=0)
    assert upstream_calls(fake_openai) == 1


def test_entries_expire(services, fake_openai: FakeOpenAI) -> None:
    service = services.start(cache_ttl_seconds=0.3)
    ask(service, temperature=0)
    time.sleep(0.5)
    ask(service, temperature=0)
    assert upstream_calls(fake_openai) == 2
