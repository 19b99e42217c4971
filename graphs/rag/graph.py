"""Answers grounded in the org's knowledge base, with thread memory.

Four nodes, in order: ``rewrite`` turns a follow-up into a standalone question from the
thread's history (only when there is history); ``retrieve`` searches the org's knowledge
base through the injected ``search`` with the identity the server wrote into
``configurable``, never the input's; ``generate`` answers from the numbered relevant
chunks, or says it found nothing without calling the model; ``cite`` lists the chunks the
answer refers to as ``[n]``. The question and the answer are appended to ``messages``
together, so a failed turn leaves nothing behind and a thread (checkpointer keyed by
``configurable.thread_id``, attached by the service) can ask follow-ups.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from chains.rag import (
    NOT_FOUND_ANSWER,
    RAG_ANSWER_PROMPT,
    build_answer_chain,
    build_condense_chain,
    format_context,
    snippet,
)
from graphs.configuration import LlmFactory, ServerKeys, server_owned
from graphs.rag.configuration import RagConfigurable, RagConfiguration, SearchFn
from graphs.rag.state import Citation, Hit, InputState, OutputState, State

if TYPE_CHECKING:
    pass


HISTORY_MESSAGES = 8
"""How many of the latest messages the rewrite sees."""
REWRITE_MAX_TOKENS = 256
_MARKER = re.compile(r"\[(\d{1,3})\]")


def relevant_hits(hits: list[Hit], configuration: RagConfiguration) -> list[Hit]:
    """The hits that count as relevant, in rank order (the context's numbering)."""
    return [hit for hit in hits if configuration.is_relevant(hit)]


def cited_numbers(answer: str, count: int) -> list[int]:
    """The ``[n]`` markers of ``answer`` that name one of ``count`` passages, in order."""
    seen: list[int] = []
    for match in _MARKER.finditer(answer):
        number = int(match.group(1))
        if 1 <= number <= count and number not in seen:
            seen.append(number)
    return seen


def build_rag_graph(
    *,
    llm_factory: LlmFactory,
    search: SearchFn,
    checkpointer: BaseCheckpointSaver | None = None,
    server_keys: ServerKeys | None = None,
) -> CompiledStateGraph:
    """Compile the RAG graph (the service attaches its checkpointer when it starts).

    ``server_keys``: ``configurable`` keys that win over the run's (a graph compiled for
    one run under LangGraph's server, ``graphs.configuration.server_owned``): the org
    whose knowledge base is searched among them.
    """

    def model_for(configuration: RagConfiguration, **overrides: Any) -> Runnable:
        llm = configuration.chat_model(llm_factory)
        params = {**configuration.call_params(), **overrides}
        return llm.bind(**params) if params else llm

    async def rewrite(state: State, config: RunnableConfig) -> dict[str, Any]:
        """The standalone search query: the question itself, or its rewrite from history."""
        config = server_owned(config, server_keys)
        question = state.get("question") or ""
        if not question.strip():  # LangGraph's server does not validate the input schema
            raise ValueError("the input has no question: send {'question': '...'}")
        history = list(state.get("messages") or [])[-HISTORY_MESSAGES:]
        if not history:
            return {"search_query": question}
        configuration = RagConfiguration.from_runnable_config(config)
        cap = min(configuration.max_tokens or REWRITE_MAX_TOKENS, REWRITE_MAX_TOKENS)
        chain = build_condense_chain(model_for(configuration, temperature=0, max_tokens=cap))
        response = await chain.ainvoke({"history": history, "question": question}, config)
        rewritten = response.text.strip() if isinstance(response, AIMessage) else ""
        return {"search_query": rewritten or question}

    async def retrieve(state: State, config: RunnableConfig) -> dict[str, Any]:
        """Search the org's knowledge base (identity from the server-set configurable)."""
        config = server_owned(config, server_keys)
        configuration = RagConfiguration.from_runnable_config(config)
        query = state.get("search_query") or state["question"]
        try:
            hits = await search(configuration.retrieval(query))
        except BaseException:
            if configuration.release_hold is not None:
                configuration.release_hold()  # the answer's model call will not happen
            raise
        return {"hits": list(hits)}

    async def generate(state: State, config: RunnableConfig) -> dict[str, Any]:
        """Answer from the relevant chunks; say so, without a model call, when there are none."""
        config = server_owned(config, server_keys)
        configuration = RagConfiguration.from_runnable_config(config)
        question = HumanMessage(state["question"])
        relevant = relevant_hits(state.get("hits") or [], configuration)
        if not relevant:
            if configuration.release_hold is not None:
                configuration.release_hold()  # no model call will settle the limit hold
            return {"answer": NOT_FOUND_ANSWER, "messages": [question, AIMessage(NOT_FOUND_ANSWER)]}
        chain = build_answer_chain(
            model_for(configuration), configuration.answer_prompt or RAG_ANSWER_PROMPT
        )
        inputs = {
            "context": format_context(relevant),
            "question": state.get("search_query") or state["question"],
        }
        response = await chain.ainvoke(inputs, config)
        answer = response.text if isinstance(response, AIMessage) else str(response)
        return {"answer": answer, "messages": [question, response]}

    async def cite(state: State, config: RunnableConfig) -> dict[str, Any]:
        """The chunks the answer cites as ``[n]``; every relevant one when it cites none."""
        config = server_owned(config, server_keys)
        configuration = RagConfiguration.from_runnable_config(config)
        relevant = relevant_hits(state.get("hits") or [], configuration)
        if not relevant:
            return {"citations": []}
        numbers = cited_numbers(state.get("answer") or "", len(relevant))
        if not numbers:
            numbers = list(range(1, len(relevant) + 1))
        return {"citations": [citation(n, relevant[n - 1]) for n in numbers]}

    with warnings.catch_warnings():
        # `config_schema` is deprecated since LangGraph 1.0 in favour of `context_schema`,
        # but LangServe forwards only RunnableConfig and shows these keys in the playground.
        warnings.simplefilter("ignore")
        builder = StateGraph(  # type: ignore[call-arg]
            State,
            input_schema=InputState,
            output_schema=OutputState,
            config_schema=RagConfigurable,
        )
    builder.add_node("rewrite", rewrite)
    builder.add_node("retrieve", retrieve)
    builder.add_node("generate", generate)
    builder.add_node("cite", cite)
    builder.add_edge(START, "rewrite")
    builder.add_edge("rewrite", "retrieve")
    builder.add_edge("retrieve", "generate")
    builder.add_edge("generate", "cite")
    builder.add_edge("cite", END)
    graph = builder.compile(checkpointer=checkpointer)
    graph.name = "rag"
    return graph


def citation(number: int, hit: Hit) -> Citation:
    """The client's view of the ``number``-th passage of the context."""
    meta = hit.get("metadata") or {}
    page = meta.get("page")
    cited = Citation(
        index=number,
        document_id=hit["document_id"],
        filename=meta.get("filename"),
        chunk_id=hit["chunk_id"],
        page=int(page) if isinstance(page, int | float) else None,
        snippet=snippet(hit.get("text") or ""),
        score=float(hit["score"]),
    )
    if (reranked := hit.get("rerank_score")) is not None:
        cited["rerank_score"] = float(reranked)
    return cited


def build_retriever(search: SearchFn) -> Runnable:
    """``str → list[Document]`` over the same search, for the org named in ``configurable``."""

    async def retrieve(query: str, config: RunnableConfig) -> list[Document]:
        configuration = RagConfiguration.from_runnable_config(config)
        hits = await search(configuration.retrieval(query))
        return [
            Document(
                page_content=hit["text"],
                id=hit["chunk_id"],
                metadata={
                    **(hit.get("metadata") or {}),
                    "document_id": hit["document_id"],
                    "chunk_id": hit["chunk_id"],
                    "score": hit["score"],
                    "vector_score": hit.get("vector_score"),
                    "keyword_score": hit.get("keyword_score"),
                    "rerank_score": hit.get("rerank_score"),
                    "relevant": hit.get("relevant"),
                },
            )
            for hit in hits
        ]

    return RunnableLambda(retrieve, name="retriever").with_types(
        input_type=str,
        output_type=list[Document],
    )
