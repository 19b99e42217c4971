"""ORM models of the service's own tables (all prefixed ``ahc_``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.keys import scoped_key
from db.base import Base, Timestamped, UtcDateTime, utcnow


class ChatThread(Timestamped, Base):
    """A conversation with memory; its messages live in LangGraph's checkpointer.

    The key is (org, thread id): two organizations may use the same thread id without
    ever seeing each other's conversation.
    """

    __tablename__ = "ahc_chat_threads"

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str | None] = mapped_column(String(200), default=None)
    model: Mapped[str | None] = mapped_column(String(128), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSON, default=dict, nullable=False
    )

    __table_args__ = (Index("ix_ahc_chat_threads_owner", "org_id", "user_id", "updated_at"),)

    @property
    def checkpoint_key(self) -> str:
        """The LangGraph ``thread_id``: namespaced by org so ids never collide."""
        return checkpoint_key(self.org_id, self.id)


def checkpoint_key(org_id: str, thread_id: str) -> str:
    """LangGraph thread id of an org's chat thread: ``<org>/<thread>``, escaped.

    ``core.keys.scoped_key`` escapes ``%``, ``/`` and ``:`` in the org (and ``%``, ``/`` in
    the thread), so no org's key equals another org's, nor any knowledge-query key
    (:func:`rag_checkpoint_key`). Ids without those characters keep the key they had.
    """
    return scoped_key(org_id, thread_id)


RAG_THREAD_PREFIX = "rag:"
"""Prefix of knowledge-query checkpoint keys; a chat key has no ``:`` before its ``/``."""


def rag_checkpoint_key(org_id: str, thread_id: str) -> str:
    """LangGraph thread id of the knowledge-query turns of an org's thread (apart from chat)."""
    return RAG_THREAD_PREFIX + checkpoint_key(org_id, thread_id)


class UsageEvent(Base):
    """One model or embedding call, as accounted: who, what, how many tokens, what it cost.

    Written in batches by ``accounting.recorder``; never updated.
    """

    __tablename__ = "ahc_usage_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, nullable=False)
    org_id: Mapped[str] = mapped_column(String(128), nullable=False)
    user_id: Mapped[str] = mapped_column(String(128), nullable=False)
    route: Mapped[str] = mapped_column(String(64), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    estimated: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(18, 8), default=Decimal(0), nullable=False)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cached: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    thread_id: Mapped[str | None] = mapped_column(String(128), default=None)
    template_name: Mapped[str | None] = mapped_column(String(128), default=None)
    template_version: Mapped[int | None] = mapped_column(Integer, default=None)
    audio_seconds: Mapped[Decimal] = mapped_column(
        Numeric(12, 3), default=Decimal(0), nullable=False
    )
    """Speech to text: the audio's decoded duration."""
    tts_characters: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    """Text to speech: the characters spoken."""

    __table_args__ = (
        Index("ix_ahc_usage_events_org_time", "org_id", "created_at"),
        Index("ix_ahc_usage_events_org_user_time", "org_id", "user_id", "created_at"),
    )


class OrgLimit(Base):
    """Spending and rate limits of an organization (``user_id`` empty) or one of its users.

    ``None`` means unlimited. Enforced by ``limits.enforcer`` with counters shared by every
    instance (Redis) or held in the process (embedded default).
    """

    __tablename__ = "ahc_limits"

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True, default="")
    requests_per_minute: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tokens_per_minute: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tokens_per_month: Mapped[int | None] = mapped_column(BigInteger, default=None)
    cost_usd_per_month: Mapped[Decimal | None] = mapped_column(Numeric(18, 6), default=None)
    audio_seconds_per_month: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tts_characters_per_month: Mapped[int | None] = mapped_column(BigInteger, default=None)
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )
    updated_by: Mapped[str | None] = mapped_column(String(128), default=None)


class ProviderKey(Timestamped, Base):
    """An organization's own provider key (bring your own key), encrypted at rest.

    Only the ciphertext and the last four characters are stored; the key is never returned.
    """

    __tablename__ = "ahc_provider_keys"

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(String(2048), nullable=False)
    last4: Mapped[str] = mapped_column(String(4), nullable=False)
    updated_by: Mapped[str | None] = mapped_column(String(128), default=None)


class CachedResponse(Base):
    """An exact-match response cache entry (the embedded default's shared tier)."""

    __tablename__ = "ahc_response_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)

    __table_args__ = (Index("ix_ahc_response_cache_expires", "expires_at"),)


class KnowledgeCollection(Timestamped, Base):
    """A named set of an org's documents, and how it is embedded and chunked.

    ``vector_collection`` names the Chroma collection that holds its vectors now; a
    re-embedding builds ``building_collection`` next to it and then swaps the two.
    """

    __tablename__ = "ahc_knowledge_collections"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    embedding_model: Mapped[str] = mapped_column(String(128), nullable=False)
    embedding_dim: Mapped[int] = mapped_column(Integer, nullable=False)
    distance: Mapped[str] = mapped_column(String(8), nullable=False, default="cosine")
    chunk_size: Mapped[int] = mapped_column(Integer, nullable=False)
    chunk_overlap: Mapped[int] = mapped_column(Integer, nullable=False)
    vector_collection: Mapped[str] = mapped_column(String(63), nullable=False)
    building_collection: Mapped[str | None] = mapped_column(String(63), default=None)
    building_model: Mapped[str | None] = mapped_column(String(128), default=None)

    __table_args__ = (UniqueConstraint("org_id", "name"),)


class KnowledgeDocument(Timestamped, Base):
    """One uploaded file: the registry entry that its chunks, vectors and postings hang off.

    ``status`` goes ``processing`` → ``ready`` | ``failed`` | ``cancelled``. The registry is
    the source of truth; Chroma holds only vectors keyed by the chunk ids listed here.
    """

    __tablename__ = "ahc_knowledge_documents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), nullable=False)
    collection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("ahc_knowledge_collections.id", ondelete="CASCADE"), nullable=False
    )
    filename: Mapped[str] = mapped_column(String(512), nullable=False)
    content_type: Mapped[str] = mapped_column(String(128), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(String(1000), default=None)
    chunks: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSON, default=dict, nullable=False
    )
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)

    __table_args__ = (
        UniqueConstraint("collection_id", "sha256"),
        Index("ix_ahc_knowledge_documents_org_time", "org_id", "created_at"),
    )


class KnowledgeFile(Base):
    """The original bytes of a document: kept for background ingestion and re-indexing."""

    __tablename__ = "ahc_knowledge_files"

    document_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("ahc_knowledge_documents.id", ondelete="CASCADE"), primary_key=True
    )
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class KnowledgeChunk(Base):
    """A chunk of a document: its text (the keyword index and re-embedding read it here)."""

    __tablename__ = "ahc_knowledge_chunks"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    document_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("ahc_knowledge_documents.id", ondelete="CASCADE"), nullable=False
    )
    collection_id: Mapped[str] = mapped_column(String(36), nullable=False)
    chunk_index: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    page: Mapped[int | None] = mapped_column(Integer, default=None)
    section: Mapped[str | None] = mapped_column(String(512), default=None)
    token_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    """Keyword tokens in ``text``: the document length of BM25."""

    __table_args__ = (
        Index("ix_ahc_knowledge_chunks_document", "document_id", "chunk_index"),
        Index("ix_ahc_knowledge_chunks_collection", "collection_id"),
    )


class KeywordPosting(Base):
    """BM25 postings of one term in one segment (the chunks of one write), packed in bytes.

    ``postings`` holds ``n`` postings as three little-endian arrays: the chunks' numbers
    (uint32, see :class:`KeywordChunk`), the term's frequency in each (uint16) and each
    chunk's token count, BM25's dl (uint16; both saturate at 65,535). One row per term and
    write instead of one per posting: the per-row overhead (PostgreSQL's tuple header and
    index entry, the collection and chunk ids) was most of the 51 KB a chunk cost.
    Written with the chunk and deleted with it, so the index is always current, shared by
    every instance and never half a document.
    """

    __tablename__ = "ahc_keyword_segment_postings"

    collection_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    term: Mapped[str] = mapped_column(String(64), primary_key=True)
    segment: Mapped[int] = mapped_column(Integer, primary_key=True)
    """The first chunk number of the write (:class:`KeywordSegment`)."""
    postings: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)

    # SQLite: clustered on the key, so a term's rows are one contiguous range.
    __table_args__ = ({"sqlite_with_rowid": False},)


class KeywordSegment(Base):
    """One write's chunk numbers (``segment`` to ``last``) and the terms it has rows for.

    Removal reads the terms here and deletes (or, when only some of the segment's chunks
    go, rewrites) exactly those posting rows by primary key.
    """

    __tablename__ = "ahc_keyword_segments"

    collection_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    segment: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(Integer, nullable=False)
    terms: Mapped[str] = mapped_column(Text, nullable=False)
    """Space-separated, sorted; terms never hold spaces."""

    __table_args__ = ({"sqlite_with_rowid": False},)


class KeywordChunk(Base):
    """A chunk's entry in the keyword index: its number in the collection and its length.

    Numbers come from the collection's ``#next`` counter and are never reused, so a
    process may keep postings by number; search maps the best numbers back to chunk ids.
    """

    __tablename__ = "ahc_keyword_numbers"

    chunk_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    collection_id: Mapped[str] = mapped_column(String(36), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    segment: Mapped[int] = mapped_column(Integer, nullable=False)
    length: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (
        Index("ux_ahc_keyword_numbers_number", "collection_id", "number", unique=True),
    )


class KeywordLog(Base):
    """Which chunk numbers each write to a collection's keyword index added or removed.

    ``version`` is the collection's ``#version`` after the write; ``first`` to ``last`` a
    run of numbers (an added segment, or removed chunks). A search process that keeps
    postings in memory at an older version reads the entries since then and patches them
    (masks the removed numbers, reads only the added segments' rows), instead of re-reading
    whole posting lists after every write. Writers prune entries older than a window.
    """

    __tablename__ = "ahc_keyword_log"

    collection_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    first: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(Integer, nullable=False)
    added: Mapped[bool] = mapped_column(Boolean, nullable=False)

    __table_args__ = ({"sqlite_with_rowid": False},)


class KeywordTerm(Base):
    """BM25 statistics kept with the postings: each term's df in a collection.

    Counting postings per query would cost O(df) (and O(N) for the collection's size); these
    counters make it a few primary-key lookups. Reserved terms hold the collection's chunk
    count (``#chunks``), token total (``#tokens``), write count (``#version``, which
    tells a search process whether its cached postings are current) and the chunk numbers
    handed out (``#next``). Updated by increments in the writer's transaction, so
    concurrent ingests and deletes add up exactly.
    """

    __tablename__ = "ahc_keyword_terms"

    collection_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    term: Mapped[str] = mapped_column(String(64), primary_key=True)
    df: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = ({"sqlite_with_rowid": False},)


class PromptTemplate(Timestamped, Base):
    """An org's named prompt template; its content lives in immutable versions.

    ``latest_version`` is the highest version number: the next one is ``latest_version + 1``
    (the primary key of the versions table turns a concurrent duplicate into an error).
    """

    __tablename__ = "ahc_prompt_templates"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    latest_version: Mapped[int] = mapped_column(Integer, nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)

    __table_args__ = (UniqueConstraint("org_id", "name"),)


class PromptTemplateVersion(Base):
    """One immutable version of a template: messages, format, variables, model defaults.

    ``tools`` and ``response_format`` (OpenAI's shapes, ``None`` when not set) are sent
    with a chat call naming the template unless the request sets its own.

    ``content_hash`` (sha256 of the canonical content) lets an identical resubmission
    return the latest version instead of creating a new one.
    """

    __tablename__ = "ahc_prompt_versions"

    template_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("ahc_prompt_templates.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    template_format: Mapped[str] = mapped_column(String(16), nullable=False)
    input_variables: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    optional_variables: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    model: Mapped[str | None] = mapped_column(String(128), default=None)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    tools: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    response_format: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, nullable=False)


class PromptTemplateLabel(Base):
    """A movable name (``production``, ``staging``...) for one version of a template."""

    __tablename__ = "ahc_prompt_labels"

    template_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("ahc_prompt_templates.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_by: Mapped[str | None] = mapped_column(String(128), default=None)
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class PromptEvaluation(Base):
    """A run of template versions over a dataset, scored by evaluators; results stored.

    ``request`` is the checked, normalized request the job runs from (versions, dataset,
    evaluators, model and params overrides, concurrency), so a restart re-runs it as it
    was accepted. ``status``: ``queued`` → ``running`` → ``done``, ``failed`` (``error``
    says why) or ``cancelled``. ``results`` holds the per-version summaries and items.
    """

    __tablename__ = "ahc_prompt_evaluations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), nullable=False)
    template_name: Mapped[str] = mapped_column(String(128), nullable=False)
    versions: Mapped[list[int]] = mapped_column(JSON, nullable=False)
    request: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    total_items: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    done_items: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)

    __table_args__ = (
        Index("ix_ahc_prompt_evaluations_template", "org_id", "template_name", "created_at"),
        Index("ix_ahc_prompt_evaluations_status", "status"),
    )


class SpeechTranscription(Base):
    """A long audio file accepted for transcription as a job, with its audio until it ends.

    ``audio`` holds the upload as received (so a restart re-runs the job; cleared when it
    ends); ``options`` the model, language, prompt and response format asked for.
    ``status``: ``queued`` → ``running`` → ``done`` (``result``: the transcript with its
    segments) or ``failed`` (``error_code``, ``error``).
    """

    __tablename__ = "ahc_speech_transcriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), nullable=False)
    user_id: Mapped[str] = mapped_column(String(128), nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    duration_s: Mapped[float] = mapped_column(Float, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    audio: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)

    __table_args__ = (
        Index("ix_ahc_speech_transcriptions_org_time", "org_id", "created_at"),
        Index("ix_ahc_speech_transcriptions_status", "status"),
    )


class StoredResponse(Base):
    """A Responses API response kept for ``GET`` and ``previous_response_id`` (``store``).

    Private to the org and user that created it. ``conversation`` is every input item the
    model saw apart from ``instructions`` (the earlier responses' input and output, then this
    request's input), so continuing from it is one read, whatever the chain's length; its
    last ``input_count`` items are the request's own input (``GET .../input_items``).
    ``response`` is the response object as it was answered.
    """

    __tablename__ = "ahc_responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), nullable=False)
    user_id: Mapped[str] = mapped_column(String(128), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    previous_response_id: Mapped[str | None] = mapped_column(String(64), default=None)
    conversation: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    input_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    response: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, nullable=False)

    __table_args__ = (Index("ix_ahc_responses_owner", "org_id", "user_id", "created_at"),)
