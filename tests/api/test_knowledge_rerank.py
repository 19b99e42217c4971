"""The optional rerank stage over HTTP: the LLM judge, a rerank endpoint, limits, fallbacks.

The judge is the real ``ChatOpenAI`` structured-output call to the fake OpenAI server, whose
``structured_reply`` scripts the grades; the rerank endpoint is the real httpx client against
``tests/fakes/rerank_server.py`` (it scores by the query's words a document contains).
Embeddings come from the fake OpenAI server too (fast).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest

from chains.rag import NOT_FOUND_ANSWER
from core.config import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.rerank_server import API_KEY, FakeRerank, score
from tests.support.knowledge import search, upload
from tests.support.service import RunningService, ServiceFactory, usage_rows

EMBEDDING = {"embedding_model": "text-embedding-3-small"}
VPN = "Security policy. The VPN client is GlobalProtect; passwords rotate every 90 days."
TRAVEL = "Travel policy. Book flights through the travel desk; the VPN works abroad too."
MEALS = "Expense policy. Meals are reimbursed up to 50 dollars per day while travelling."
QUESTION = "Which VPN client do we use?"
ENDPOINT_MODEL = "jina-reranker-v2-base-multilingual"


def load(service: RunningService) -> dict[str, str]:
    """Upload the three documents; filename → document id."""
    response = upload(
        service,
        [("vpn.txt", VPN.encode()), ("travel.txt", TRAVEL.encode()), ("meals.txt", MEALS.encode())],
    )
    assert response.status_code == 201, response.text
    return {d["filename"]: d["id"] for d in response.json()["documents"]}


def grades(*pairs: tuple[int, int]) -> str:
    """The judge's scripted answer: (passage number, grade) pairs."""
    return json.dumps({"grades": [{"passage": p, "grade": g} for p, g in pairs]})


def judge_requests(fake: FakeOpenAI) -> list[Any]:
    return [
        r
        for r in fake.requests
        if r.path.endswith("/chat/completions") and r.body.get("response_format")
    ]


def answer_requests(fake: FakeOpenAI) -> list[Any]:
    return [
        r
        for r in fake.requests
        if r.path.endswith("/chat/completions") and not r.body.get("response_format")
    ]


def rerank_rows(service: RunningService, count: int) -> list[dict[str, str]]:
    """The usage events of the rerank stage, once ``count`` of them are recorded."""
    deadline = time.monotonic() + 10
    while True:
        rows = [r for r in usage_rows(service, 1) if r["route"] == "knowledge.rerank"]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_the_judge_reorders_and_is_accounted(
    db_services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    service = db_services.start(**EMBEDDING)
    docs = load(service)
    plain = search(service, QUESTION, k=3)
    assert plain.status_code == 200, plain.text
    assert plain.json()["rerank"] is None and not judge_requests(fake_openai)  # off by default
    order = [r["document_id"] for r in plain.json()["results"]]
    assert order[0] == docs["vpn.txt"]
    # The judge finds the passage the search ranked last the only answer.
    fake_openai.structured_reply = grades((1, 1), (2, 0), (3, 3))

    reranked = search(service, QUESTION, k=2, rerank=True)

    assert reranked.status_code == 200, reranked.text
    body = reranked.json()
    assert body["rerank"] == {"model": "gpt-4o-mini", "applied": True, "error": None}
    results = body["results"]
    assert [r["document_id"] for r in results] == [order[2], order[0]]  # cut to k after
    assert [r["rerank_score"] for r in results] == [1.0, pytest.approx(1 / 3, abs=1e-6)]
    (call,) = judge_requests(fake_openai)
    assert call.body["model"] == "gpt-4o-mini" and call.body["temperature"] == 0
    assert call.body["response_format"]["type"] == "json_schema"
    assert call.body["response_format"]["json_schema"]["strict"] is True
    assert call.headers["authorization"] == "Bearer sk-service-key"
    prompt = "\n".join(str(m["content"]) for m in call.body["messages"])
    assert QUESTION in prompt and "[3] " in prompt and "GlobalProtect" in prompt
    (row,) = rerank_rows(service, 1)
    assert row["model"] == "gpt-4o-mini" and row["provider"] == "openai"
    assert row["org_id"] == "org-a" and int(row["prompt_tokens"]) > 0
    assert int(row["completion_tokens"]) > 0 and row["status"] == "ok"
    by_route = httpx.get(
        f"{service.api}/usage?group_by=route", headers=service.headers(role="admin")
    ).json()["groups"]
    assert any(g["key"] == "knowledge.rerank" and g["total_tokens"] > 0 for g in by_route)


def test_the_judge_decides_what_rag_answers_from(
    services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    service = services.start(**EMBEDDING, knowledge_rerank_default=True)
    load(service)
    ask = f"{service.api}/knowledge/query"
    # No passage answers: "not found", without the answer's model call (the refusal signal).
    fake_openai.structured_reply = grades((1, 1), (2, 1), (3, 0))
    refused = httpx.post(ask, headers=service.headers(), json={"question": QUESTION}, timeout=60)
    assert refused.status_code == 200, refused.text
    assert refused.json()["answer"] == NOT_FOUND_ANSWER and refused.json()["citations"] == []
    assert len(judge_requests(fake_openai)) == 1 and not answer_requests(fake_openai)

    # One passage answers: the answer's context is that passage alone.
    fake_openai.requests.clear()
    fake_openai.structured_reply = grades((1, 0), (2, 0), (3, 3))
    answered = httpx.post(ask, headers=service.headers(), json={"question": QUESTION}, timeout=60)
    assert answered.status_code == 200, answered.text
    (answer_call,) = answer_requests(fake_openai)
    judged = judge_requests(fake_openai)[0]
    third = str(judged.body["messages"][-1]["content"]).split("[3] ", 1)[1][:40]
    context = str(answer_call.body["messages"][0]["content"])
    assert third in context and "\n[1] (" in context and "\n[2] (" not in context
    (cited,) = answered.json()["citations"]
    assert cited["rerank_score"] == 1.0 and third.startswith(cited["snippet"][:20])

    # The same through the stream: the citations event carries the judge's score.
    streamed = httpx.post(
        ask,
        headers=service.headers(),
        json={"question": QUESTION, "stream": True},
        timeout=60,
    )
    assert streamed.status_code == 200, streamed.text
    events = [
        json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")
    ]
    (cited_event,) = [e for e in events if e["type"] == "citations"]
    assert [c["rerank_score"] for c in cited_event["citations"]] == [1.0]

    # The request opts out of the service's default: no judge.
    fake_openai.requests.clear()
    plain = httpx.post(
        ask, headers=service.headers(), json={"question": QUESTION, "rerank": False}, timeout=60
    )
    assert plain.status_code == 200, plain.text
    assert not judge_requests(fake_openai) and len(answer_requests(fake_openai)) == 1


def test_a_failing_judge_keeps_the_search_order_and_says_so(
    services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    service = services.start(**EMBEDDING, knowledge_rerank_timeout_seconds=1.0)
    load(service)
    # Keyword searches embed nothing: the scripted failures reach the judge.
    order = [
        r["chunk_id"] for r in search(service, QUESTION, k=2, mode="keyword").json()["results"]
    ]
    fake_openai.fail_next(status=400)  # e.g. a model without structured output (no retry)

    failed = search(service, QUESTION, k=2, mode="keyword", rerank="gpt-4o-mini")

    assert failed.status_code == 200, failed.text
    body = failed.json()
    assert body["rerank"]["applied"] is False
    assert body["rerank"]["error"]["code"] == "upstream_error"
    assert [r["chunk_id"] for r in body["results"]] == order
    assert all(r["rerank_score"] is None for r in body["results"])

    fake_openai.delay_next(2.5)  # slower than the stage's timeout
    late = search(service, QUESTION, k=2, mode="keyword", rerank=True)
    assert late.status_code == 200, late.text
    assert late.json()["rerank"]["error"]["code"] == "upstream_timeout"
    assert [r["chunk_id"] for r in late.json()["results"]] == order

    fake_openai.structured_reply = "this is not a verdict"
    unreadable = search(service, QUESTION, k=2, mode="keyword", rerank=True)
    assert unreadable.status_code == 200, unreadable.text
    assert unreadable.json()["rerank"]["error"]["code"] == "invalid_verdict"


def test_the_judge_calls_with_the_orgs_own_key(
    services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    service = services.start(**EMBEDDING)
    load(service)
    own = httpx.put(
        f"{service.api}/provider-keys/openai",
        headers=service.headers("org-a", "boss", "admin"),
        json={"api_key": "sk-org-a-own"},
    )
    assert own.status_code in (200, 201), own.text
    fake_openai.structured_reply = grades((1, 3))

    found = search(service, QUESTION, k=2, mode="keyword", rerank=True)

    assert found.status_code == 200, found.text
    assert found.json()["rerank"]["applied"] is True
    (call,) = judge_requests(fake_openai)
    assert call.headers["authorization"] == "Bearer sk-org-a-own"


def test_limits_hold_before_the_judge_is_called(
    services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    service = services.start(**EMBEDDING)
    load(service)
    admin = service.headers("org-a", "boss", "admin")
    # Enough for the query's embedding (~8 tokens), not for the judge's prompt of 3 passages.
    limits = httpx.put(f"{service.api}/limits", headers=admin, json={"tokens_per_day": 150})
    assert limits.status_code == 200, limits.text
    assert search(service, QUESTION, k=2).status_code == 200
    fake_openai.structured_reply = grades((1, 3))

    refused = search(service, QUESTION, k=2, rerank=True)

    assert refused.status_code == 429, refused.text
    assert "tokens_per_day" in refused.text
    assert not judge_requests(fake_openai)


def test_rerank_without_a_provider_is_a_clear_400(
    services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    offline = services.start(openai_api_key=None)  # only the embedded model
    refused = search(offline, QUESTION, rerank=True)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "rerank_unavailable" and "OPENAI_API_KEY" in error["message"]
    assert search(offline, QUESTION).status_code == 200  # without it: a plain search
    ask = httpx.post(
        f"{offline.api}/knowledge/query",
        headers=offline.headers(),
        json={"question": QUESTION, "rerank": True},
        timeout=60,
    )
    assert ask.status_code == 400 and ask.json()["error"]["code"] == "rerank_unavailable"

    online = services.start()
    local = search(online, QUESTION, rerank="local")  # the embedded model cannot judge
    assert local.status_code == 400 and local.json()["error"]["code"] == "rerank_unavailable"
    unknown = search(online, QUESTION, rerank="no-such-model")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_model"
    assert not judge_requests(fake_openai)

    with pytest.raises(ValueError, match="needs a provider"):
        Settings(_env_file=None, openai_api_key=None, knowledge_rerank_default=True)  # type: ignore[call-arg]


def endpoint_settings(fake: FakeRerank, **more: Any) -> dict[str, Any]:
    return {
        **EMBEDDING,
        "knowledge_rerank_url": f"{fake.base_url}/v1/rerank",
        "knowledge_rerank_api_key": API_KEY,
        "knowledge_rerank_models": [ENDPOINT_MODEL],
        **more,
    }


def test_a_rerank_endpoint_reorders_and_is_accounted(
    db_services: ServiceFactory, fake_openai: FakeOpenAI, fake_rerank: FakeRerank
) -> None:
    service = db_services.start(**endpoint_settings(fake_rerank, knowledge_rerank_min_score=0.5))
    docs = load(service)
    query = "travel desk flights"  # the fake endpoint scores travel.txt 1.0, the rest 0

    found = search(service, query, k=2, rerank=True)  # true: the endpoint's first model

    assert found.status_code == 200, found.text
    body = found.json()
    assert body["rerank"] == {"model": ENDPOINT_MODEL, "applied": True, "error": None}
    top = body["results"][0]
    assert top["document_id"] == docs["travel.txt"]
    assert top["rerank_score"] == pytest.approx(score(query, TRAVEL)) == 1.0
    (request,) = fake_rerank.requests
    assert request["authorization"] == f"Bearer {API_KEY}"
    sent = request["body"]
    assert sent["model"] == ENDPOINT_MODEL and sent["query"] == query
    assert len(sent["documents"]) == 3 and sent["top_n"] == 3
    assert not judge_requests(fake_openai)
    (row,) = rerank_rows(service, 1)
    assert row["model"] == ENDPOINT_MODEL and row["provider"] == "rerank"
    words = sum(len(re.findall(r"\w+", text)) for text in [query, *sent["documents"]])
    assert int(row["prompt_tokens"]) == words and row["status"] == "ok"

    # Its score decides relevance: nothing reaches 0.5 for an off-topic question, so RAG
    # answers "not found" without a chat call.
    ask = httpx.post(
        f"{service.api}/knowledge/query",
        headers=service.headers(),
        json={"question": "cafeteria lunch hours", "rerank": ENDPOINT_MODEL},
        timeout=60,
    )
    assert ask.status_code == 200, ask.text
    assert ask.json()["answer"] == NOT_FOUND_ANSWER and not answer_requests(fake_openai)


def test_a_failing_rerank_endpoint_falls_back(
    services: ServiceFactory, fake_rerank: FakeRerank
) -> None:
    service = services.start(**endpoint_settings(fake_rerank))
    load(service)
    order = [r["chunk_id"] for r in search(service, QUESTION, k=3).json()["results"]]
    fake_rerank.fail_next(status=503)

    failed = search(service, QUESTION, k=3, rerank=ENDPOINT_MODEL)

    assert failed.status_code == 200, failed.text
    assert failed.json()["rerank"]["applied"] is False
    assert failed.json()["rerank"]["error"]["code"] == "upstream_error"
    assert [r["chunk_id"] for r in failed.json()["results"]] == order
    rows = rerank_rows(service, 1)
    assert rows and rows[0]["status"] == "error" and rows[0]["error_code"] == "upstream_error"
