"""The RAG graph, fake chat model and fake search: rewrite, relevance, citations, identity.

Also the knowledge service's relevance rule (``found_relevant``), which the graph trusts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.prompts import ChatPromptTemplate
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import ValidationError

from chains.rag import (
    NOT_FOUND_ANSWER,
    RAG_ANSWER_PROMPT,
    build_answer_chain,
    format_context,
    snippet,
)
from graphs.rag.configuration import DEFAULT_MIN_SIMILARITY, RetrievalQuery
from graphs.rag.graph import build_rag_graph, build_retriever, cited_numbers
from graphs.rag.state import Hit
from knowledge.keyword_index import K1, idf
from services.knowledge import found_relevant, keyword_unit

SERVER = {"org_id": "org-a", "user_id": "alice", "route": "test.rag", "request_id": "req-1"}


def hit(
    n: int,
    text: str,
    *,
    vector: float | None = 0.9,
    keyword: float | None = None,
    filename: str = "doc.txt",
    page: int | None = None,
    relevant: bool | None = None,
) -> Hit:
    meta: dict[str, Any] = {"filename": filename, "chunk_index": 0}
    if page is not None:
        meta["page"] = page
    found = Hit(
        document_id=f"doc-{n}",
        chunk_id=f"chunk-{n}",
        text=text,
        score=vector or keyword or 0.0,
        metadata=meta,
        vector_score=vector,
        keyword_score=keyword,
    )
    if relevant is not None:  # the knowledge service's verdict; fakes may give none
        found["relevant"] = relevant
    return found


class FakeSearch:
    """Records every query; answers with fixed hits."""

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.queries: list[RetrievalQuery] = []

    async def __call__(self, query: RetrievalQuery) -> list[Hit]:
        self.queries.append(query)
        return list(self.hits)


class Prompts(BaseCallbackHandler):
    """The messages of every chat model call."""

    def __init__(self) -> None:
        self.calls: list[list[BaseMessage]] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.calls.append(list(messages[0]))


def fake_llm(*replies: str) -> GenericFakeChatModel:
    # An exhausted iterator raises: a model call nobody expected fails the test.
    messages: Iterator[AIMessage | str] = iter([AIMessage(r) for r in replies])
    return GenericFakeChatModel(messages=messages)


def config(prompts: Prompts | None = None, **configurable: Any) -> dict[str, Any]:
    return {
        "configurable": {**SERVER, **configurable},
        "callbacks": [prompts] if prompts else [],
    }


VPN = hit(1, "Connect to vpn.example.com with the GlobalProtect client.", filename="it.txt")
LEAVE = hit(2, "Employees get 25 days of paid vacation.", filename="hr.txt", page=3)


async def test_answers_from_context_with_citations() -> None:
    search = FakeSearch([VPN, LEAVE])
    prompts = Prompts()
    graph = build_rag_graph(
        llm_factory=lambda _m: fake_llm("Use GlobalProtect [1]."), search=search
    )
    out = await graph.ainvoke({"question": "How do I connect to the VPN?"}, config(prompts))
    assert out["answer"] == "Use GlobalProtect [1]."
    assert [c["document_id"] for c in out["citations"]] == ["doc-1"]
    assert out["citations"][0] | {"snippet": ""} == {
        "index": 1,
        "document_id": "doc-1",
        "filename": "it.txt",
        "chunk_id": "chunk-1",
        "page": None,
        "snippet": "",
        "score": 0.9,
    }
    assert out["search_query"] == "How do I connect to the VPN?"
    assert len(prompts.calls) == 1  # no history: no rewrite call
    system, human = prompts.calls[0][0].text, prompts.calls[0][-1].text
    assert "[1] (it.txt)\nConnect to vpn.example.com" in system
    assert "[2] (hr.txt, page 3)" in system
    assert "don't know" in system
    assert human == "How do I connect to the VPN?"
    assert search.queries[0].query == "How do I connect to the VPN?"


async def test_rewrite_only_with_history() -> None:
    search = FakeSearch([VPN])
    prompts = Prompts()
    llm = fake_llm("First [1].", "How do I install the GlobalProtect client?", "Like this [1].")
    graph = build_rag_graph(llm_factory=lambda _m: llm, search=search, checkpointer=InMemorySaver())
    thread = config(prompts, thread_id="t1")
    await graph.ainvoke({"question": "What VPN client do we use?"}, thread)
    assert len(prompts.calls) == 1
    out = await graph.ainvoke({"question": "How do I install it?"}, thread)
    assert len(prompts.calls) == 3  # the rewrite, then the answer
    rewrite = prompts.calls[1]
    assert "standalone question" in rewrite[0].text
    assert [m.text for m in rewrite[1:3]] == ["What VPN client do we use?", "First [1]."]
    assert rewrite[-1].text == "Follow-up question: How do I install it?"
    assert search.queries[-1].query == "How do I install the GlobalProtect client?"
    assert out["search_query"] == "How do I install the GlobalProtect client?"
    assert out["answer"] == "Like this [1]."
    state = await graph.aget_state(thread)
    assert [m.text for m in state.values["messages"]] == [
        "What VPN client do we use?",
        "First [1].",
        "How do I install it?",
        "Like this [1].",
    ]


async def test_client_history_in_the_input_also_triggers_a_rewrite() -> None:
    prompts = Prompts()
    graph = build_rag_graph(
        llm_factory=lambda _m: fake_llm("standalone?", "answer [1]"), search=FakeSearch([VPN])
    )
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    out = await graph.ainvoke({"question": "and then?", "messages": history}, config(prompts))
    assert out["search_query"] == "standalone?"
    assert len(prompts.calls) == 2


async def test_nothing_relevant_answers_not_found_without_a_model_call() -> None:
    weak = hit(3, "Lunch is served at noon.", vector=DEFAULT_MIN_SIMILARITY - 0.05)
    search = FakeSearch([weak])
    released: list[bool] = []
    graph = build_rag_graph(llm_factory=lambda _m: fake_llm(), search=search)
    out = await graph.ainvoke(
        {"question": "Who won the 1998 world cup?"},
        config(release_hold=lambda: released.append(True)),
    )
    assert out["answer"] == NOT_FOUND_ANSWER
    assert out["citations"] == []
    assert released == [True]
    empty = build_rag_graph(llm_factory=lambda _m: fake_llm(), search=FakeSearch([]))
    assert (await empty.ainvoke({"question": "anything?"}, config()))["answer"] == NOT_FOUND_ANSWER


async def test_a_failed_search_gives_the_hold_back() -> None:
    class Refused(Exception):
        pass

    async def failing(query: RetrievalQuery) -> list[Hit]:
        raise Refused

    released: list[bool] = []
    graph = build_rag_graph(llm_factory=lambda _m: fake_llm(), search=failing)
    with pytest.raises(Refused):
        await graph.ainvoke({"question": "q"}, config(release_hold=lambda: released.append(True)))
    assert released == [True]


@pytest.mark.parametrize(
    ("vector", "keyword", "relevant"),
    [
        (DEFAULT_MIN_SIMILARITY, None, True),
        (DEFAULT_MIN_SIMILARITY - 0.01, None, False),
        (None, 1.7, True),
        (0.1, 0.4, True),
        (None, 0.0, False),
        (None, None, False),
    ],
)
async def test_fallback_relevance_rule_without_a_verdict(
    vector: float | None, keyword: float | None, relevant: bool
) -> None:
    prompts = Prompts()
    graph = build_rag_graph(
        llm_factory=lambda _m: fake_llm("ok [1]"),
        search=FakeSearch([hit(1, "text", vector=vector, keyword=keyword)]),
    )
    out = await graph.ainvoke({"question": "q"}, config(prompts))
    assert (out["answer"] != NOT_FOUND_ANSWER) is relevant
    assert len(prompts.calls) == int(relevant)


async def test_min_similarity_is_configurable() -> None:
    search = FakeSearch([hit(1, "t", vector=0.35)])
    graph = build_rag_graph(llm_factory=lambda _m: fake_llm("ok"), search=search)
    assert (await graph.ainvoke({"question": "q"}, config()))["answer"] == NOT_FOUND_ANSWER
    out = await graph.ainvoke({"question": "q"}, config(min_similarity=0.3))
    assert out["answer"] == "ok"
    # The search gets the request's bar (None: the collection's model's, chosen by the service).
    assert [q.min_similarity for q in search.queries] == [None, 0.3]


@pytest.mark.parametrize(
    ("hits", "answered"),
    [
        # The search's verdict wins over any score (it applied the collection's model's bar).
        ([hit(1, "t", vector=0.99, keyword=9.0, relevant=False)], False),
        ([hit(1, "t", vector=0.05, relevant=True)], True),
        ([hit(1, "t", vector=None, keyword=None, relevant=True)], True),
        (
            [hit(1, "a", vector=0.2, relevant=True), hit(2, "b", vector=None, relevant=True)],
            True,
        ),
    ],
)
async def test_the_search_verdict_decides(hits: list[Hit], answered: bool) -> None:
    prompts = Prompts()
    graph = build_rag_graph(llm_factory=lambda _m: fake_llm("ok [1]"), search=FakeSearch(hits))
    out = await graph.ainvoke({"question": "q"}, config(prompts, min_similarity=0.0))
    assert (out["answer"] != NOT_FOUND_ANSWER) is answered
    assert len(prompts.calls) == int(answered)
    if answered:  # every hit of a relevant search is context
        assert prompts.calls[0][0].text.count("] (doc.txt)") == len(hits)


@pytest.mark.parametrize(
    ("similarity", "keyword", "min_similarity", "min_keyword", "relevant"),
    [
        (0.30, None, 0.30, 1.0, True),  # the similarity bar is inclusive
        (0.29, None, 0.30, 1.0, False),
        (0.29, 0.0, 0.30, 1.0, False),  # no keyword match
        (0.29, 9.9, 0.30, 1.0, False),  # BM25 just under one unit (10)
        (0.29, 10.0, 0.30, 1.0, True),  # ... or at it: a strong keyword match is enough
        (None, 10.0, 0.30, 1.0, True),  # keyword mode: no similarity at all
        (None, 6.0, None, 0.6, True),
        (None, 5.9, None, 0.6, False),
        (0.05, None, None, 1.0, True),  # a model without a bar: any similarity
        (0.29, 50.0, 0.30, None, False),  # BM25 alone never suffices
        (None, None, 0.30, 1.0, False),  # nothing found
        (0.85, 0.0, 0.85, 1.0, True),
        (0.849, 0.0, 0.85, 1.0, False),
    ],
)
def test_found_relevant(
    similarity: float | None,
    keyword: float | None,
    min_similarity: float | None,
    min_keyword: float | None,
    relevant: bool,
) -> None:
    verdict = found_relevant(
        similarity, keyword, min_similarity=min_similarity, min_keyword=min_keyword, unit=10.0
    )
    assert verdict is relevant


def test_keyword_unit_is_one_rare_term_and_grows_with_the_collection() -> None:
    assert keyword_unit(146) == pytest.approx(idf(146, 1) * (K1 + 1))
    assert keyword_unit(146) == pytest.approx(10.087, abs=1e-3)  # the bench's collection
    assert keyword_unit(10) < keyword_unit(146) < keyword_unit(100_000)
    assert keyword_unit(0) == keyword_unit(1) > 0  # an empty collection still has a unit


async def test_only_cited_passages_are_citations_else_all_relevant() -> None:
    irrelevant = hit(9, "noise", vector=0.2)
    search = FakeSearch([VPN, irrelevant, LEAVE])
    graph = build_rag_graph(
        llm_factory=lambda _m: fake_llm("Vacation: 25 days [2]. [7]"), search=search
    )
    out = await graph.ainvoke({"question": "vacation?"}, config())
    # [2] is the second *relevant* passage (the context holds only relevant ones); [7] is none.
    assert [(c["index"], c["document_id"], c["page"]) for c in out["citations"]] == [
        (2, "doc-2", 3)
    ]
    graph = build_rag_graph(llm_factory=lambda _m: fake_llm("No markers."), search=search)
    out = await graph.ainvoke({"question": "vacation?"}, config())
    assert [c["document_id"] for c in out["citations"]] == ["doc-1", "doc-2"]


async def test_identity_comes_from_config_never_from_input() -> None:
    search = FakeSearch([VPN])
    graph = build_rag_graph(llm_factory=lambda _m: fake_llm("a [1]"), search=search)
    await graph.ainvoke(
        {"question": "q", "org_id": "org-evil", "user_id": "mallory"},
        config(collection="hr", k=2, filter={"team": "it"}, mode="keyword"),
    )
    query = search.queries[0]
    assert (query.org_id, query.user_id, query.route, query.request_id) == (
        "org-a",
        "alice",
        "test.rag",
        "req-1",
    )
    assert (query.collection, query.k, query.filter, query.mode) == (
        "hr",
        2,
        {"team": "it"},
        "keyword",
    )
    unconfigured = build_rag_graph(llm_factory=lambda _m: fake_llm("x"), search=search)
    with pytest.raises(ValueError, match="org_id"):
        await unconfigured.ainvoke({"question": "q"}, {"configurable": {}})


async def test_streamed_tokens_come_from_generate_only() -> None:
    llm = fake_llm("standalone question", "streamed answer [1]")
    graph = build_rag_graph(
        llm_factory=lambda _m: llm, search=FakeSearch([VPN]), checkpointer=InMemorySaver()
    )
    thread = config(thread_id="s1")
    await graph.aupdate_state(thread, {"messages": [("user", "hi"), ("ai", "hello")]})
    nodes: dict[str, str] = {}
    async for message, meta in graph.astream({"question": "q"}, thread, stream_mode="messages"):
        if isinstance(message, AIMessageChunk):  # not the messages the nodes write to the state
            node = meta["langgraph_node"]
            nodes[node] = nodes.get(node, "") + message.text
    assert nodes["generate"] == "streamed answer [1]"
    assert nodes.get("rewrite") == "standalone question"  # the service filters on the node


async def test_custom_answer_prompt_from_config() -> None:
    prompts = Prompts()
    custom = ChatPromptTemplate.from_messages(
        [("system", "CUSTOM {context}"), ("human", "Q: {question}")]
    )
    graph = build_rag_graph(llm_factory=lambda _m: fake_llm("a"), search=FakeSearch([VPN]))
    await graph.ainvoke({"question": "q"}, config(prompts, answer_prompt=custom))
    assert prompts.calls[0][0].text.startswith("CUSTOM [1] (it.txt)")
    assert prompts.calls[0][1].text == "Q: q"
    with pytest.raises(ValueError, match="only"):
        build_answer_chain(fake_llm(), ChatPromptTemplate.from_messages([("human", "{x}")]))


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"question": ""},
        {"question": "  "},
        {"question": "a\x00"},
        {"question": "q", "messages": 1},
    ],
)
def test_malformed_input_fails_the_input_schema(payload: dict[str, Any]) -> None:
    # What LangServe validates each request with (a 422 before the graph runs).
    graph = build_rag_graph(llm_factory=lambda _m: fake_llm(), search=FakeSearch([VPN]))
    with pytest.raises(ValidationError):
        graph.get_input_schema().model_validate(payload)
    valid = graph.get_input_schema().model_validate({"question": "q", "messages": [("user", "x")]})
    assert valid.model_dump()["messages"][0]["content"] == "x"


def test_prompt_variables_and_context_format() -> None:
    assert set(RAG_ANSWER_PROMPT.input_variables) == {"context", "question"}
    text = format_context([VPN, LEAVE])
    assert text.startswith("[1] (it.txt)\nConnect")
    assert "\n\n[2] (hr.txt, page 3)\nEmployees" in text
    long = snippet("word " * 200)
    assert len(long) <= 300 and long.endswith("…")
    assert cited_numbers("a [2] b [1][2] c [0] [12]", 3) == [2, 1]


async def test_retriever_returns_documents_for_the_configured_org() -> None:
    search = FakeSearch([VPN])
    retriever = build_retriever(search)
    docs = await retriever.ainvoke("vpn", config())
    assert docs[0].page_content == VPN["text"]
    assert docs[0].metadata["document_id"] == "doc-1"
    assert docs[0].metadata["filename"] == "it.txt"
    assert search.queries[0].org_id == "org-a"
    with pytest.raises(ValueError, match="org_id"):
        await retriever.ainvoke("vpn", {"configurable": {"org_id": "org-a"}})
