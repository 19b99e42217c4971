"""State of the RAG graph: the question in, the grounded answer and its citations out.

Everything in the state is plain data (strings, numbers, dicts, messages), so the
checkpointer can store a thread's turns.
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired

import orjson
from langchain_core.messages import AnyMessage, BaseMessage, convert_to_messages
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field, field_validator
from typing_extensions import TypedDict


class Hit(TypedDict):
    """A retrieved chunk (the knowledge search's hit, as plain data)."""

    document_id: str
    chunk_id: str
    text: str
    score: float
    """vector: similarity; keyword: BM25; hybrid: the fused score (0..1)."""
    metadata: dict[str, Any]
    """``filename``, ``page``, ``section``, ``chunk_index``... and the upload's own keys."""
    vector_score: float | None
    keyword_score: float | None
    relevant: NotRequired[bool | None]
    """The search's verdict: whether it found anything relevant (same for all its hits,
    unless a rerank judge graded each)."""
    rerank_score: NotRequired[float | None]
    """The rerank stage's score (None: not reranked)."""


class Citation(TypedDict):
    """A source of the answer, as the client sees it."""

    index: int
    """The ``[n]`` that refers to it in the answer (its number in the context)."""
    document_id: str
    filename: str | None
    chunk_id: str
    page: int | None
    snippet: str
    """The start of the chunk, at most 300 characters."""
    score: float
    rerank_score: NotRequired[float]
    """The rerank stage's score, when the search was reranked (absent: not asked, or its
    judge failed and the search's own order stood)."""


class InputState(BaseModel):
    """The graph's public input: a question, and optionally earlier turns.

    Validated here (not in a node), so a malformed input is a 422 from LangServe's input
    validation, never a 500 from inside the graph. In a thread, earlier turns come from
    the checkpointer; ``messages`` adds turns the client holds itself.
    """

    question: str = Field(min_length=1, max_length=8000, description="The user's question.")
    messages: list[AnyMessage] = Field(
        default_factory=list,
        description="Earlier turns, e.g. [{'role': 'user', 'content': '...'}] (optional).",
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question must not be blank")
        if "\x00" in value:
            raise ValueError("question must not contain NUL characters")
        return value

    @field_validator("messages", mode="before")
    @classmethod
    def _to_messages(cls, value: Any) -> Any:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValueError("messages must be a list")
        try:
            messages = [
                m if isinstance(m, BaseMessage) else convert_to_messages([m])[0] for m in value
            ]
            for message in messages:
                orjson.dumps(message.model_dump())  # storable by the checkpointer
        except (ValueError, TypeError, NotImplementedError, KeyError) as exc:
            raise ValueError(f"invalid message: {exc}") from exc
        return messages


class OutputState(TypedDict):
    """What a run returns."""

    answer: str
    """The grounded answer, citing passages as ``[n]``."""
    citations: list[Citation]
    """The passages the answer cites (all relevant ones when it cites none)."""
    search_query: str
    """What was searched: the question, or its standalone rewrite in a thread."""


class State(TypedDict):
    """The checkpointed state of one thread (the last turn's working data, and history)."""

    question: str
    """This turn's question, as asked."""
    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation: each turn's question and answer (what follow-ups are rewritten from)."""
    search_query: str
    """What was searched: the question, or its standalone rewrite when there is history."""
    hits: list[Hit]
    """The chunks found for ``search_query``, best first."""
    answer: str
    """The grounded answer, citing passages as ``[n]``."""
    citations: list[Citation]
    """The passages the answer cites."""
