"""Request and response bodies of the knowledge-base routes (``/api/knowledge``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import TemplateRef
from core.patterns import COLLECTION_PATTERN, THREAD_ID_PATTERN
from services.gateway_types import KnowledgeQuestion

RerankModel = Annotated[str, Field(min_length=1, max_length=200)]
"""A rerank judge's model name."""


class DocumentError(BaseModel):
    """Why a document failed (``status: failed``) or was cancelled."""

    code: str
    message: str


class DocumentPublic(BaseModel):
    """A document of the knowledge base."""

    id: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    chunks: int
    status: Literal["processing", "ready", "failed", "cancelled"]
    collection: str
    metadata: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime
    error: DocumentError | None = None
    duplicate: bool = Field(
        default=False, description="The same content was already in the collection."
    )


class FileErrorPublic(BaseModel):
    """One file of an upload that was not ingested."""

    filename: str
    code: str
    message: str
    status: int


class UploadPublic(BaseModel):
    """The answer to an upload: what was accepted and what was not."""

    documents: list[DocumentPublic]
    errors: list[FileErrorPublic]


class DocumentsPublic(BaseModel):
    """A page of documents."""

    data: list[DocumentPublic]
    count: int


class CollectionCreate(BaseModel):
    """A new collection: how it embeds, measures distance and chunks."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=COLLECTION_PATTERN)
    embedding_model: str | None = Field(
        default=None, description="Default: the service's (`local` when no key is set)."
    )
    distance: Literal["cosine", "l2", "ip"] = "cosine"
    chunk_size: int | None = Field(default=None, ge=100, le=20_000)
    chunk_overlap: int | None = Field(default=None, ge=0, le=10_000)


class CollectionPublic(BaseModel):
    """A collection and the embedding that built it."""

    name: str
    embedding_model: str
    embedding_dim: int
    distance: str
    chunk_size: int
    chunk_overlap: int
    reembedding_to: str | None = Field(
        default=None, description="Set while a re-embedding with this model runs."
    )
    created_at: datetime


class CollectionsPublic(BaseModel):
    """The org's collections."""

    data: list[CollectionPublic]


class SearchRequest(BaseModel):
    """``POST /api/knowledge/search``."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=8000)
    k: int = Field(default=4, ge=1, le=100)
    filter: dict[str, Any] | None = Field(
        default=None, description="Chroma `where` syntax: {'team': 'hr'}, {'$and': [...]}."
    )
    collection: str = Field(default="default", pattern=COLLECTION_PATTERN)
    mmr: bool = Field(default=False, description="Diversify results (maximal marginal relevance).")
    mode: Literal["vector", "keyword", "hybrid"] = Field(
        default="hybrid",
        description="hybrid: BM25 and vector results fused by score (each scaled within the "
        "search, then weighted).",
    )
    rerank: bool | RerankModel | None = Field(
        default=None,
        description="Rerank the best candidates (`AHC_KNOWLEDGE_RERANK_CANDIDATES`) before "
        "cutting to k: `true` with the default judge, or a model name (a chat model: the "
        "LLM judge; or a rerank endpoint's model). Accounted like any model call. Unset: "
        "the service's default (`AHC_KNOWLEDGE_RERANK_DEFAULT`); `false`: off. Without a "
        "provider: 400 `rerank_unavailable`.",
        examples=[True, "gpt-4o-mini"],
    )


class SearchResult(BaseModel):
    """One chunk found."""

    document_id: str
    chunk_id: str
    text: str
    score: float = Field(
        description="vector: similarity; keyword: BM25; hybrid: fused score (0..1)."
    )
    vector_score: float | None = None
    keyword_score: float | None = None
    rerank_score: float | None = Field(
        default=None,
        description="The rerank stage's score: the judge's grade / 3 (0..1), or the rerank "
        "endpoint's relevance_score. None: not reranked.",
    )
    metadata: dict[str, Any]


class RerankError(BaseModel):
    """Why the rerank stage fell back to the search's order."""

    code: str
    message: str


class RerankPublic(BaseModel):
    """What the rerank stage did."""

    model: str
    applied: bool = Field(
        description="False: the judge failed and the results keep the search's order."
    )
    error: RerankError | None = Field(
        default=None, description="Why it fell back (`upstream_error`, `upstream_timeout`...)."
    )


class SearchResponse(BaseModel):
    """The chunks found, best first."""

    results: list[SearchResult]
    collection: str
    mode: str
    rerank: RerankPublic | None = Field(default=None, description="Set when reranking was asked.")


class ReembedRequest(BaseModel):
    """``POST /api/knowledge/reembed``: rebuild a collection with another embedding model."""

    model_config = ConfigDict(extra="forbid")

    collection: str = Field(default="default", pattern=COLLECTION_PATTERN)
    embedding_model: str | None = Field(
        default=None, description="Default: the service's current default model."
    )


class KnowledgeQueryRequest(BaseModel):
    """``POST /api/knowledge/query``: a question answered from the knowledge base."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=8000, pattern=r"^[^\x00]*[^\x00\s][^\x00]*$")
    k: int = Field(default=4, ge=1, le=50, description="Chunks retrieved.")
    filter: dict[str, Any] | None = Field(
        default=None, description="Chroma `where` syntax: {'team': 'hr'}, {'$and': [...]}."
    )
    collection: str = Field(default="default", pattern=COLLECTION_PATTERN)
    mode: Literal["vector", "keyword", "hybrid"] = "hybrid"
    min_similarity: float | None = Field(
        default=None,
        ge=-1,
        le=1,
        description='Similarity the best chunk must reach for an answer, else "not found" '
        "without a model call (default: calibrated per embedding model, "
        "`AHC_RAG_MIN_SIMILARITY`; a strong keyword match also counts).",
    )
    rerank: bool | RerankModel | None = Field(
        default=None,
        description="Rerank the best candidates (`AHC_KNOWLEDGE_RERANK_CANDIDATES`) before "
        "cutting to k: `true` with the default judge, or a model name (a chat model: the "
        "LLM judge; or a rerank endpoint's model). Accounted like any model call. Unset: "
        "the service's default (`AHC_KNOWLEDGE_RERANK_DEFAULT`); `false`: off. Without a "
        "provider: 400 `rerank_unavailable`.",
        examples=[True, "gpt-4o-mini"],
    )
    model: str | None = Field(default=None, description="Chat model; the default if unset.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    stream: bool = Field(
        default=False, description="SSE: `token` events, then `citations`, `usage`, `[DONE]`."
    )
    thread_id: str | None = Field(
        default=None,
        pattern=THREAD_ID_PATTERN,
        description="Remember the conversation: follow-ups are rewritten from it.",
    )
    template: TemplateRef | None = Field(
        default=None,
        description="A stored answer prompt (default: the built-in `rag-answer`). It must use "
        "{context} and {question} and nothing else (an optional `history` placeholder "
        "aside); the service supplies them, so `variables` must be empty. Its model, "
        "temperature, max_tokens and stop apply where the request sets none.",
    )

    def to_question(self) -> KnowledgeQuestion:
        """The service's request type (the wire's ``stream`` flag chooses the call)."""
        return KnowledgeQuestion(
            question=self.question,
            collection=self.collection,
            k=self.k,
            filter=self.filter,
            mode=self.mode,
            min_similarity=self.min_similarity,
            rerank=self.rerank,
            model=self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            thread_id=self.thread_id,
            template=self.template,
        )


class CitationPublic(BaseModel):
    """A passage the answer is grounded in."""

    index: int = Field(description="The `[n]` that refers to it in the answer.")
    document_id: str
    filename: str | None
    chunk_id: str
    page: int | None = None
    snippet: str = Field(description="The start of the chunk (at most 300 characters).")
    score: float
    rerank_score: float | None = Field(
        default=None,
        description="The rerank stage's score; null when it was not asked, or its judge "
        "failed and the search's own order and relevance stood.",
    )


class QueryUsage(BaseModel):
    """Tokens of the model calls that answered (rewrite and answer)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class KnowledgeQueryResponse(BaseModel):
    """The grounded answer and its sources."""

    answer: str
    citations: list[CitationPublic]
    usage: QueryUsage
    model: str
    thread_id: str | None = None
