"""RAG over HTTP: grounded answers with citations, streams, threads, tenancy, accounting.

Documents are uploaded through the API and embedded by the default local embedder
(``local-e5use``: multilingual-e5-small and the multilingual Universal Sentence Encoder side
by side), so "nothing relevant" is decided
with the bars the service ships for it (``Settings.rag_min_similarity``,
``rag_min_keyword_score``); the chat model is the fake OpenAI upstream.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest
from langchain_core.documents import Document
from langserve import RemoteRunnable

from chains.rag import NOT_FOUND_ANSWER
from tests.fakes.openai_server import FakeOpenAI
from tests.support.knowledge import upload
from tests.support.service import RunningService, ServiceFactory

IT = (
    "IT handbook. The office VPN client is GlobalProtect. Connect to vpn.example.com with "
    "your SSO login. The helpdesk phone extension is 4242."
)
HR = (
    "HR policy. Employees get 25 days of paid vacation per year. Unused vacation days "
    "expire at the end of March."
)
FOOD = "Facilities. The cafeteria serves lunch from 11:30 to 14:00, vegetarian dishes daily."
VPN_QUESTION = "Which VPN client do we use?"
OFF_TOPIC = "Who won the football world cup in 1998?"  # no word in common with the documents


@pytest.fixture
def kb(service: RunningService) -> dict[str, str]:
    """The three documents of org-a, by filename → document id."""
    return load_documents(service)


def load_documents(service: RunningService) -> dict[str, str]:
    """Upload the three documents for org-a; filename → document id."""
    response = upload(service, [("it.txt", IT.encode()), ("hr.txt", HR.encode())])
    assert response.status_code == 201, response.text
    more = upload(service, [("food.txt", FOOD.encode())])
    assert more.status_code == 201, more.text
    docs = response.json()["documents"] + more.json()["documents"]
    assert all(d["status"] == "ready" for d in docs)
    return {d["filename"]: d["id"] for d in docs}


def ask(
    service: RunningService, question: str, *, org: str = "org-a", user: str = "alice", **body: Any
) -> httpx.Response:
    return httpx.post(
        f"{service.api}/knowledge/query",
        headers=service.headers(org, user),
        json={"question": question, **body},
        timeout=60,
    )


def chat_requests(fake: FakeOpenAI) -> list[Any]:
    return [r for r in fake.requests if r.path.endswith("/chat/completions")]


def sse(response: httpx.Response) -> list[Any]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def test_answer_cites_the_right_document(
    service: RunningService, kb: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = "The VPN client is GlobalProtect [1]."
    response = ask(service, VPN_QUESTION)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == "The VPN client is GlobalProtect [1]."
    assert [c["document_id"] for c in body["citations"]] == [kb["it.txt"]]
    citation = body["citations"][0]
    assert citation["filename"] == "it.txt" and citation["index"] == 1
    assert citation["snippet"].startswith("IT handbook. The office VPN client is GlobalProtect")
    assert citation["chunk_id"] and citation["score"] > 0
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    assert body["usage"]["total_tokens"] == (
        body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )
    assert body["model"] == "gpt-4o-mini" and body["thread_id"] is None
    [sent] = chat_requests(fake_openai)  # no history: no rewrite call
    system, question = sent.body["messages"][0], sent.body["messages"][-1]
    assert system["role"] == "system" and "[1] (it.txt)" in system["content"]
    assert "GlobalProtect" in system["content"] and "don't know" in system["content"]
    assert question == {"role": "user", "content": VPN_QUESTION}


def test_nothing_relevant_says_so_without_calling_the_model(
    service: RunningService, kb: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    response = ask(service, OFF_TOPIC)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == NOT_FOUND_ANSWER
    assert body["citations"] == []
    assert body["usage"]["total_tokens"] == 0
    assert chat_requests(fake_openai) == []


def test_the_collections_model_sets_the_bar_and_a_request_overrides_it(
    service: RunningService, kb: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    collections = httpx.get(f"{service.api}/knowledge/collections", headers=service.headers())
    assert collections.status_code == 200, collections.text
    assert [c["embedding_model"] for c in collections.json()["data"]] == ["local-e5use"]
    assert service.settings.rag_min_similarity["local-e5use"] < 0.8  # not e5's 0.8x
    # Below the bar, with no word in common: not found, no model call (as without override).
    assert ask(service, OFF_TOPIC).json()["answer"] == NOT_FOUND_ANSWER
    assert chat_requests(fake_openai) == []
    # A request's min_similarity replaces the model's bar: any similarity clears -1.
    fake_openai.reply = "Nothing about football here [1]."
    body = ask(service, OFF_TOPIC, min_similarity=-1).json()
    assert body["answer"] == "Nothing about football here [1]."
    assert len(chat_requests(fake_openai)) == 1
    # ... and an unreachable one leaves only a strong keyword match (three rare terms).
    strong = ask(service, "VPN client GlobalProtect?", min_similarity=1).json()
    assert strong["answer"] != NOT_FOUND_ANSWER
    unrelated = ask(service, "What is the weather like?", min_similarity=1).json()
    assert unrelated["answer"] == NOT_FOUND_ANSWER


def test_empty_knowledge_base_and_other_orgs_find_nothing(
    service: RunningService, kb: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    body = ask(service, VPN_QUESTION, org="org-b", user="mallory").json()
    assert body["answer"] == NOT_FOUND_ANSWER and body["citations"] == []
    assert chat_requests(fake_openai) == []
    missing = ask(service, VPN_QUESTION, collection="nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "collection_not_found"


def test_stream_emits_tokens_then_citations_then_usage(
    service: RunningService, kb: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = "Use GlobalProtect to connect [1]."
    with httpx.stream(
        "POST",
        f"{service.api}/knowledge/query",
        headers=service.headers(),
        json={"question": VPN_QUESTION, "stream": True},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse(response)
    kinds = [e if e == "[DONE]" else e["type"] for e in events]
    tokens = [e["content"] for e in events[: kinds.index("citations")]]
    assert len(tokens) > 1 and set(kinds[: len(tokens)]) == {"token"}
    assert "".join(tokens) == "Use GlobalProtect to connect [1]."
    assert kinds[len(tokens) :] == ["citations", "usage", "[DONE]"]
    assert [c["document_id"] for c in events[len(tokens)]["citations"]] == [kb["it.txt"]]
    assert events[len(tokens) + 1]["usage"]["completion_tokens"] > 0


def test_stream_of_nothing_found(
    service: RunningService, kb: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    response = ask(service, OFF_TOPIC, stream=True)
    events = sse(response)
    assert events[0] == {"type": "token", "content": NOT_FOUND_ANSWER}
    assert events[1] == {"type": "citations", "citations": []}
    assert events[-1] == "[DONE]"
    assert chat_requests(fake_openai) == []


def test_stream_errors_before_the_first_token_are_http_errors(
    service: RunningService, kb: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail_next(status=400)
    response = ask(service, VPN_QUESTION, stream=True)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "upstream_bad_request"
    bad_filter = ask(service, VPN_QUESTION, stream=True, filter={"$where": 1})
    assert bad_filter.status_code == 422


def test_client_disconnect_cancels_the_model_call(
    service: RunningService, kb: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = " ".join(f"w{i}" for i in range(200)) + " GlobalProtect [1]"
    fake_openai.token_delay = 0.02
    body = {"question": VPN_QUESTION, "stream": True}
    with httpx.stream(
        "POST", f"{service.api}/knowledge/query", headers=service.headers(), json=body
    ) as response:
        lines = response.iter_lines()
        for _ in range(4):
            next(lines)
    assert fake_openai.client_disconnected.wait(2.0)


def test_thread_follow_up_is_rewritten_and_private(
    db_services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    service = db_services.start()  # SQLite and PostgreSQL checkpointers
    kb = load_documents(service)
    fake_openai.reply = "How do I install the GlobalProtect VPN client? [1]"
    first = ask(service, VPN_QUESTION, thread_id="rag-1")
    assert first.status_code == 200 and first.json()["thread_id"] == "rag-1"
    assert len(chat_requests(fake_openai)) == 1
    follow_up = ask(service, "How do I install it?", thread_id="rag-1")
    assert follow_up.status_code == 200, follow_up.text
    rewrite, answer = chat_requests(fake_openai)[1:]
    messages = rewrite.body["messages"]
    assert "standalone question" in messages[0]["content"]
    assert [m["content"] for m in messages[1:3]] == [VPN_QUESTION, fake_openai.reply]
    assert messages[-1]["content"] == "Follow-up question: How do I install it?"
    assert rewrite.body["temperature"] == 0
    # The answer is asked with the rewritten question, over the VPN document.
    assert answer.body["messages"][-1]["content"] == fake_openai.reply
    assert "[1] (it.txt)" in answer.body["messages"][0]["content"]
    assert follow_up.json()["citations"][0]["document_id"] == kb["it.txt"]

    # Another user of the org cannot use the thread; another org's same id is its own thread.
    colleague = ask(service, "And then?", user="bob", thread_id="rag-1")
    assert colleague.status_code == 404
    assert colleague.json()["error"]["code"] == "thread_not_found"
    calls = len(chat_requests(fake_openai))
    other = ask(service, "How do I install it?", org="org-b", user="mallory", thread_id="rag-1")
    assert other.status_code == 200
    assert other.json()["answer"] == NOT_FOUND_ANSWER  # no history, no documents
    assert len(chat_requests(fake_openai)) == calls
    # The chat turns of the same thread id live apart from its RAG turns; the thread shows
    # both.
    thread = httpx.get(f"{service.api}/chat/threads/rag-1", headers=service.headers())
    assert thread.status_code == 200 and thread.json()["messages"] == []
    turns = thread.json()["knowledge_messages"]
    assert [m["role"] for m in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[0]["content"] == VPN_QUESTION
    assert turns[2]["content"] == "How do I install it?"


def test_usage_is_recorded_per_route(
    service: RunningService, kb: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = "GlobalProtect [1]."
    assert ask(service, VPN_QUESTION).status_code == 200
    admin = service.headers(role="admin")
    deadline = time.monotonic() + 10
    while True:
        groups = httpx.get(f"{service.api}/usage?group_by=route", headers=admin).json()["groups"]
        routes = {g["key"]: g for g in groups}
        if "knowledge.query" in routes and routes["knowledge.query"]["requests"] >= 2:
            break
        assert time.monotonic() < deadline, routes
        time.sleep(0.2)
    # One chat model call and one query embedding, both under the route.
    assert routes["knowledge.query"]["requests"] == 2
    assert routes["knowledge.query"]["prompt_tokens"] > 0
    models = httpx.get(f"{service.api}/usage?group_by=model", headers=admin).json()["groups"]
    assert {"gpt-4o-mini"} <= {g["key"] for g in models}


def test_limits_apply_and_not_found_gives_its_hold_back(
    service: RunningService, kb: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    admin = service.headers("org-a", "boss", "admin")
    limits = httpx.put(f"{service.api}/limits", headers=admin, json={"tokens_per_day": 100})
    assert limits.status_code == 200, limits.text
    assert ask(service, VPN_QUESTION, max_tokens=200).status_code == 429  # worst case > 100
    # Each not-found run holds ~60 tokens and calls no model: the hold must come back.
    for _ in range(3):
        response = ask(service, OFF_TOPIC, max_tokens=50)
        assert response.status_code == 200, response.text
        time.sleep(0.05)


def remote(service: RunningService, path: str, org: str = "org-a") -> RemoteRunnable:
    return RemoteRunnable(
        f"{service.url}/runnables/{path}", headers=service.headers(org), timeout=60
    )


def test_remote_runnable_rag_and_retriever(
    service: RunningService, kb: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = "GlobalProtect [1]."
    rag = remote(service, "rag")
    out = rag.invoke({"question": VPN_QUESTION})
    assert out["answer"] == "GlobalProtect [1]."
    assert [c["document_id"] for c in out["citations"]] == [kb["it.txt"]]
    # A thread: the follow-up is rewritten from the first turn.
    config = {"configurable": {"thread_id": "ls-rag"}}
    rag.invoke({"question": VPN_QUESTION}, config=config)
    calls = len(chat_requests(fake_openai))
    # The fake model's one reply is also the rewrite: make it a question the KB answers.
    fake_openai.reply = "How do I install the GlobalProtect VPN client? [1]"
    rag.invoke({"question": "How do I install it?"}, config=config)
    assert len(chat_requests(fake_openai)) == calls + 2
    chunks = list(rag.stream({"question": VPN_QUESTION}))
    assert chunks
    # The org comes from the token: an injected one is overwritten.
    theirs = remote(service, "rag", org="org-b").invoke(
        {"question": VPN_QUESTION}, config={"configurable": {"org_id": "org-a"}}
    )
    assert theirs["answer"] == NOT_FOUND_ANSWER

    retriever = remote(service, "retriever")
    docs = retriever.invoke("VPN client GlobalProtect")
    assert docs and all(isinstance(d, Document) for d in docs)
    assert docs[0].metadata["filename"] == "it.txt"
    assert docs[0].metadata["document_id"] == kb["it.txt"]
    keyword = retriever.invoke("vacation", config={"configurable": {"mode": "keyword", "k": 1}})
    assert [d.metadata["filename"] for d in keyword] == ["hr.txt"]
    assert remote(service, "retriever", org="org-b").invoke("VPN client GlobalProtect") == []

    admin = service.headers(role="admin")
    deadline = time.monotonic() + 10
    while True:
        groups = httpx.get(f"{service.api}/usage?group_by=route", headers=admin).json()["groups"]
        routes = {g["key"] for g in groups}
        if {"runnables.rag", "runnables.retriever"} <= routes or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {"runnables.rag", "runnables.retriever"} <= routes


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"question": ""},
        {"question": "   "},
        {"question": "a\u0000b"},
        {"question": 5},
        {"question": "x", "k": 0},
        {"question": "x", "k": 1000},
        {"question": "x", "mode": "semantic"},
        {"question": "x", "filter": "team=hr"},
        {"question": "x", "filter": {"$where": "1"}},
        {"question": "x", "thread_id": "a b/c"},
        {"question": "x", "collection": "../etc"},
        {"question": "x", "min_similarity": 3},
        {"question": "x", "surprise": True},
    ],
)
def test_malformed_query_is_422(service: RunningService, body: dict[str, Any]) -> None:
    response = httpx.post(
        f"{service.api}/knowledge/query", headers=service.headers(), json=body, timeout=30
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"]


def test_unknown_model_is_400(service: RunningService) -> None:
    response = ask(service, "x", model="nope")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_model"


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("rag", {"input": {}}),
        ("rag", {"input": {"question": ""}}),
        ("rag", {"input": {"question": "a\u0000b"}}),
        ("rag", {"input": "just a string"}),
        ("rag", {"input": {"question": "x", "messages": [{"role": "wizard", "content": "x"}]}}),
        ("rag", {"input": {"question": "x"}, "config": {"configurable": {"k": 0}}}),
        ("rag", {"input": {"question": "x"}, "config": {"configurable": {"mode": "x"}}}),
        ("retriever", {"input": {"question": "x"}}),
        ("retriever", {"input": "x", "config": {"configurable": {"collection": "../x"}}}),
        ("retriever", {"input": "x", "config": {"configurable": {"filter": {"$bad": 1}}}}),
    ],
)
def test_malformed_runnable_input_is_422(
    service: RunningService, path: str, payload: dict[str, Any]
) -> None:
    response = httpx.post(
        f"{service.url}/runnables/{path}/invoke",
        headers=service.headers(),
        json=payload,
        timeout=30,
    )
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("path", ["rag", "retriever"])
def test_schema_endpoints_and_playground(service: RunningService, path: str) -> None:
    headers = service.headers()
    for endpoint in ("input_schema", "output_schema", "config_schema", "playground/"):
        response = httpx.get(f"{service.url}/runnables/{path}/{endpoint}", headers=headers)
        assert response.status_code == 200, endpoint
    if path == "rag":
        schema = httpx.get(f"{service.url}/runnables/rag/input_schema", headers=headers).json()
        assert "question" in schema["required"]
        config = httpx.get(f"{service.url}/runnables/rag/config_schema", headers=headers).json()
        assert {"thread_id", "collection", "k", "min_similarity"} <= set(str(config).split("'"))


def test_runnable_routes_need_a_token(service: RunningService) -> None:
    for path in ("rag", "retriever"):
        response = httpx.post(f"{service.url}/runnables/{path}/invoke", json={"input": "x"})
        assert response.status_code == 401
