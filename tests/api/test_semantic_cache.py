"""Semantic cache (opt-in): rephrased repeats are answered from the cache, per context only."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from services.semantic_cache import normalize_question
from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService, ServiceFactory


def ask(
    service: RunningService,
    question: str,
    *,
    org: str = "org-a",
    system: str | None = None,
    **body: Any,
) -> httpx.Response:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": question})
    return httpx.post(
        f"{service.api}/chat/completions",
        headers=service.headers(org, "alice"),
        json={"model": "gpt-4o-mini", "messages": messages, "temperature": 0, **body},
        timeout=30,
    )


def calls(fake: FakeOpenAI) -> int:
    return sum(r.path.endswith("/chat/completions") for r in fake.requests)


@pytest.fixture
def cached(services: ServiceFactory) -> RunningService:
    return services.start(semantic_cache_enabled=True, semantic_cache_embedding_model="local-use")


def settle() -> None:
    time.sleep(0.3)  # the semantic index is written in the background


def test_rephrased_question_is_a_hit(cached: RunningService, fake_openai: FakeOpenAI) -> None:
    first = ask(cached, "How do I reset my VPN password?")
    settle()
    again = ask(cached, "how can I reset my VPN password")
    assert calls(fake_openai) == 1
    assert again.json()["choices"] == first.json()["choices"]
    other = ask(cached, "What is the capital of France?")  # unrelated: a miss
    assert calls(fake_openai) == 2
    assert (
        other.json()["choices"][0]["message"]["content"]
        != first.json()["choices"][0]["message"]["content"]
    )


def test_never_across_orgs_contexts_or_parameters(
    cached: RunningService, fake_openai: FakeOpenAI
) -> None:
    ask(cached, "How do I reset my VPN password?")
    settle()
    ask(cached, "How can I reset my VPN password?", org="org-b")
    ask(cached, "How can I reset my VPN password?", system="Answer in French.")
    ask(cached, "How can I reset my VPN password?", max_tokens=7)
    assert calls(fake_openai) == 4


def test_streams_hit_too_and_hits_are_accounted(
    cached: RunningService, fake_openai: FakeOpenAI
) -> None:
    client = openai.OpenAI(base_url=cached.api, api_key=cached.token())
    ask(cached, "Where is the office in Seoul?")
    settle()
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "where is the office in seoul"}],
        temperature=0,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: Where is the office in Seoul?" and calls(fake_openai) == 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        usage = httpx.get(
            f"{cached.api}/usage?group_by=model", headers=cached.headers(role="admin")
        ).json()
        groups = {g["key"]: g for g in usage["groups"]}
        if groups.get("gpt-4o-mini", {}).get("cache_hits") == 1 and "local-use" in groups:
            break
        time.sleep(0.2)
    assert groups["gpt-4o-mini"]["cache_hits"] == 1
    assert groups["local-use"]["requests"] == 2  # the question embeddings are accounted


def test_off_by_default(service: RunningService, fake_openai: FakeOpenAI) -> None:
    ask(service, "How do I reset my VPN password?")
    ask(service, "How can I reset my VPN password?")
    assert calls(fake_openai) == 2


def test_normalization() -> None:
    messy = "  What's   the CAPITAL, of France?! "
    assert normalize_question(messy) == "what s the capital of france"
    assert normalize_question("ＡＢＣ 연차는?") == "abc 연차는"
