"""Per-call configuration of the RAG graph, read from ``config["configurable"]``.

The chat configuration (model and generation parameters, ``org_id``/``user_id``) plus what
retrieval needs. Identity (``org_id``, ``user_id``, ``route``, ``request_id``) is written
by the server after the client's keys and is the only identity retrieval ever uses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableConfig
from typing_extensions import TypedDict

from graphs.configuration import ChatConfiguration
from graphs.rag.state import Hit

SearchMode = Literal["vector", "keyword", "hybrid"]

DEFAULT_MIN_SIMILARITY = 0.81
"""The per-chunk similarity bar for hits that carry no verdict of their own.

The knowledge service decides relevance itself, with the bar of the collection's embedding
model (``Settings.rag_min_similarity``, calibrated in bench/rag_quality.py), and marks
every hit ``relevant``; a request's ``min_similarity`` is passed to it. Only a search
function that gives no verdict falls back to the old rule: a keyword match, or a vector
similarity of at least ``min_similarity`` (this default suits multilingual-e5-small).
"""


class RagConfigurable(TypedDict, total=False):
    """The ``configurable`` keys a client may set (the schema the playground shows)."""

    thread_id: str
    model: str
    temperature: float
    max_tokens: int
    collection: str
    k: int
    filter: dict[str, Any]
    mode: SearchMode
    min_similarity: float
    rerank: bool | str


@dataclass(frozen=True, kw_only=True)
class RetrievalQuery:
    """One knowledge search, for the org and user the server named."""

    org_id: str
    user_id: str
    route: str
    request_id: str | None
    query: str
    k: int
    filter: dict[str, Any] | None
    collection: str
    mode: SearchMode
    min_similarity: float | None = None
    """The request's similarity bar (None: the one of the collection's embedding model)."""
    rerank: bool | str | None = None
    """The rerank stage: None the service's default, False off, True or a judge's model."""


SearchFn = Callable[[RetrievalQuery], Awaitable[list[Hit]]]
"""The injected knowledge search (the service's, or a fake in tests)."""


@dataclass(kw_only=True)
class RagConfiguration(ChatConfiguration):
    """What the RAG nodes need to know for one call."""

    route: str = field(default="rag", metadata={"description": "Set by the server."})
    request_id: str | None = field(default=None, metadata={"description": "Set by the server."})
    collection: str = field(default="default", metadata={"description": "Collection searched."})
    k: int = field(default=4, metadata={"description": "Chunks retrieved."})
    filter: dict[str, Any] | None = field(
        default=None, metadata={"description": "Metadata filter (Chroma `where` syntax)."}
    )
    mode: SearchMode = field(default="hybrid", metadata={"description": "How to search."})
    min_similarity: float | None = field(
        default=None,
        metadata={
            "description": "Similarity the best chunk must reach for an answer (default: "
            "calibrated for the collection's embedding model)."
        },
    )
    rerank: bool | str | None = field(
        default=None,
        metadata={
            "description": "Rerank the candidates before answering: true (the default "
            "judge) or a model name; false: off (default: the service's setting)."
        },
    )
    answer_prompt: ChatPromptTemplate | None = field(
        default=None,
        metadata={"description": "Set by the server: the answer prompt (default: built-in)."},
    )
    release_hold: Callable[[], None] | None = field(
        default=None,
        metadata={"description": "Set by the server: gives the limit hold back (no model call)."},
    )

    @classmethod
    def from_runnable_config(cls, config: RunnableConfig | None) -> RagConfiguration:
        """Read the known keys of ``configurable``, ignoring the rest (without mutating it)."""
        configuration = super().from_runnable_config(config)
        assert isinstance(configuration, RagConfiguration)
        return configuration

    def retrieval(self, query: str) -> RetrievalQuery:
        """The search to run for ``query``; refused without a server-set identity."""
        if not self.org_id or not self.user_id:
            raise ValueError("the RAG graph needs org_id and user_id set by the server")
        return RetrievalQuery(
            org_id=self.org_id,
            user_id=self.user_id,
            route=self.route,
            request_id=self.request_id,
            query=query,
            k=self.k,
            filter=dict(self.filter) if self.filter is not None else None,
            collection=self.collection,
            mode=self.mode,
            min_similarity=self.min_similarity,
            rerank=self.rerank,
        )

    def is_relevant(self, hit: Hit) -> bool:
        """The search's verdict (``relevant``); without one, the per-chunk fallback rule.

        The fallback: a keyword match, or a vector similarity of at least
        ``min_similarity`` (default :data:`DEFAULT_MIN_SIMILARITY`).
        """
        verdict = hit.get("relevant")
        if verdict is not None:
            return bool(verdict)
        keyword = hit.get("keyword_score")
        vector = hit.get("vector_score")
        if keyword is not None and keyword > 0:
            return True
        bar = self.min_similarity if self.min_similarity is not None else DEFAULT_MIN_SIMILARITY
        return vector is not None and vector >= bar
