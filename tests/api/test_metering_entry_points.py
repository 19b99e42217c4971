"""Every entry point that calls a model bills the org's own key and counts against its limits.

Each case stores an org key and sets limits, runs one entry point, and checks that every
chat call the fake upstream saw carried the org's key, and that the org's token limit
counted exactly what the usage events record (so nothing ran unmetered, and nothing was
held without being settled or released).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.test_prompt_evaluations import make_template, poll
from tests.api.test_rag import IT, VPN_QUESTION
from tests.fakes.openai_server import FakeOpenAI
from tests.support.knowledge import upload
from tests.support.service import RunningService

ORG_KEY = "sk-org-a-own-key-1234"
INGEST_TASK = "knowledge.ingest"  # the usage label of a document's ingestion
MESSAGES = [{"role": "user", "content": "hello there"}]


def _post(svc: RunningService, path: str, body: dict[str, Any]) -> httpx.Response:
    response = httpx.post(f"{svc.url}{path}", headers=svc.headers(), json=body, timeout=60)
    response.read()
    assert response.status_code in (200, 202), response.text
    return response


def chat(svc: RunningService, **extra: Any) -> None:
    _post(svc, "/api/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES, **extra})


def chat_stream(svc: RunningService, **extra: Any) -> None:
    body = _post(svc, "/api/chat/stream", {"messages": MESSAGES, **extra}).text
    assert "data: [DONE]" in body


def knowledge(svc: RunningService, **extra: Any) -> None:
    response = _post(svc, "/api/knowledge/query", {"question": VPN_QUESTION, **extra})
    assert "GlobalProtect" in response.text or "echo" in response.text


def runnable(path: str, run_input: Any, configurable: dict[str, Any] | None = None) -> Entry:
    def call(svc: RunningService) -> None:
        body = {"input": run_input, "config": {"configurable": configurable or {}}}
        _post(svc, f"/runnables/{path}", body)

    return call


def batch(svc: RunningService) -> None:
    body = {"requests": [{"messages": MESSAGES}, {"messages": MESSAGES, "temperature": 1}]}
    results = _post(svc, "/api/chat/batch", body).json()["results"]
    assert all(r["response"] is not None for r in results), results


def evaluation(svc: RunningService) -> None:
    make_template(svc)
    dataset = [{"variables": {"country": "France"}, "expected": "France"}]
    response = _post(svc, "/api/prompt-templates/capital/evaluate", {"dataset": dataset})
    assert poll(svc, response.headers["location"])["status"] == "done"


Entry = Callable[[RunningService], None]
ENTRY_POINTS: dict[str, Entry] = {
    "chat": chat,
    "chat-thread": lambda svc: chat(svc, thread_id="metered"),
    "chat-stream": chat_stream,
    "chat-stream-thread": lambda svc: chat_stream(svc, thread_id="metered-stream"),
    "chat-completions-stream": lambda svc: chat_stream(svc, stream=True),
    "knowledge-query": knowledge,
    "knowledge-query-stream": lambda svc: knowledge(svc, stream=True),
    "runnables-chat": runnable("chat/invoke", {"messages": MESSAGES}),
    "runnables-completion": runnable("completion/invoke", {"input": "hi"}),
    "runnables-completion-stream": runnable("completion/stream", {"input": "hi"}),
    "runnables-rag": runnable("rag/invoke", {"question": VPN_QUESTION}),
    "runnables-prompt": runnable("prompt/invoke", {"text": "Metering, one piece."}),
    "runnables-voice": runnable("voice/invoke", {"transcript": "hello there", "speak": False}),
    "chat-batch": batch,
    "evaluation": evaluation,
}
NEEDS_DOCUMENTS = {"knowledge-query", "knowledge-query-stream", "runnables-rag"}


def org_tokens(svc: RunningService) -> int:
    """What the org's ``tokens_per_day`` counter holds (the service runs in this process)."""
    counters = svc.app.state.services.limits.counters
    values = getattr(counters, "_values", {})
    return sum(v for k, (v, _exp) in values.items() if k.startswith("org:org-a:tokens_per_day"))


def used_tokens(svc: RunningService) -> tuple[int, int]:
    """The org's usage events so far: (requests, total tokens), but the documents' ingestion.

    (The upload's embeddings ran before the limits were set, and their event may be written
    after the baseline is read.)
    """
    report = httpx.get(
        f"{svc.api}/usage",
        headers=svc.headers("org-a", "boss", "admin"),
        params={"group_by": "route"},
    )
    assert report.status_code == 200, report.text
    groups = [g for g in report.json()["groups"] if g["key"] != INGEST_TASK]
    return sum(g["requests"] for g in groups), sum(g["total_tokens"] for g in groups)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_point_uses_the_org_key_and_counts_against_its_limits(
    name: str, service: RunningService, fake_openai: FakeOpenAI
) -> None:
    if name in NEEDS_DOCUMENTS:
        uploaded = upload(service, [("it.txt", IT.encode())])
        assert uploaded.status_code == 201, uploaded.text
    admin = service.headers("org-a", "boss", "admin")
    stored = httpx.put(
        f"{service.api}/provider-keys/openai", headers=admin, json={"api_key": ORG_KEY}
    )
    assert stored.status_code == 200, stored.text
    limits = {"tokens_per_day": 10**9, "requests_per_minute": 10**6}
    assert httpx.put(f"{service.api}/limits", headers=admin, json=limits).status_code == 200
    requests_before, tokens_before = used_tokens(service)
    counted_before = org_tokens(service)
    seen = len(fake_openai.requests)

    ENTRY_POINTS[name](service)

    calls = [r for r in fake_openai.requests[seen:] if r.path.endswith("/chat/completions")]
    assert calls, "the entry point called no model"
    assert {r.headers["authorization"] for r in calls} == {f"Bearer {ORG_KEY}"}
    deadline = time.monotonic() + 15
    while True:  # usage events are written in batches, settlements in tasks
        requests, tokens = used_tokens(service)
        used, counted = tokens - tokens_before, org_tokens(service) - counted_before
        if (requests > requests_before and used > 0 and counted == used) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.1)
    assert requests > requests_before and used > 0
    assert counted == used, f"the limit counted {counted} tokens, the usage events {used}"
