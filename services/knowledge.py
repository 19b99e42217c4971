"""Knowledge-base use cases: upload, list, delete, re-index, search, re-embed.

Routes and the RAG graph call this; it checks the org on every access, runs ingestion
through the job queue (bounded, fair between orgs), and accounts every embedding call.
The pieces it composes: ``loaders`` (bytes → chunks), ``knowledge.registry`` (SQL),
``knowledge.keyword_index`` (BM25 in SQL), ``knowledge.vectors`` (Chroma).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from langchain_core.embeddings import Embeddings
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounting.accountant import Accountant
from accounting.embeddings import AccountedEmbeddings, estimate_tokens
from accounting.events import CallContext
from auth.tokens import Principal
from core.config import Settings
from core.errors import ApiError
from db.models import KnowledgeCollection, KnowledgeDocument, KnowledgeFile
from db.session import session_scope
from jobs.queue import JobQueue
from knowledge import keyword_index, registry
from knowledge.filters import InvalidFilter, validate_filter
from knowledge.fusion import reciprocal_rank_fusion
from knowledge.ingest import DocumentGone, VectorTarget, ingest_document
from knowledge.metadata import InvalidMetadata, chunk_metadata, validate_user_metadata
from knowledge.vectors import Distance, VectorHit, VectorStore, space_of
from limits.enforcer import LimitEnforcer
from loaders import CONTENT_TYPES, LoaderError, sniff_type
from providers.embeddings import EmbeddingRegistry, UnknownEmbeddingModel
from providers.keys import ProviderKeyStore

logger = logging.getLogger(__name__)

INGEST_TASK = "knowledge.ingest"
REEMBED_TASK = "knowledge.reembed"
SearchMode = Literal["vector", "keyword", "hybrid"]
DEFAULT_COLLECTION = "default"


@dataclass(frozen=True)
class UploadedFile:
    """One file of an upload, as received."""

    filename: str
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class FileError:
    """Why one file of an upload was not ingested."""

    filename: str
    status: int
    code: str
    message: str


@dataclass
class UploadResult:
    """Documents accepted (``duplicate`` when the content was already there) and errors."""

    documents: list[tuple[KnowledgeDocument, bool]] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)


@dataclass(frozen=True)
class CollectionOptions:
    """How a new collection embeds and chunks (``None``: the service default)."""

    embedding_model: str | None = None
    distance: Distance | None = None
    chunk_size: int | None = None
    chunk_overlap: int | None = None


@dataclass(frozen=True)
class SearchQuery:
    """A knowledge search, as the API and the RAG graph ask it."""

    query: str
    k: int = 4
    filter: dict[str, Any] | None = None
    collection: str = DEFAULT_COLLECTION
    mmr: bool = False
    mode: SearchMode = "hybrid"
    min_similarity: float | None = None
    """The similarity bar of :func:`found_relevant` (None: the collection's model's)."""


@dataclass(frozen=True)
class SearchHit:
    """A chunk found for a query; ``score`` is the similarity, BM25 or fused (RRF) score."""

    document_id: str
    chunk_id: str
    text: str
    score: float
    metadata: dict[str, Any]
    vector_score: float | None = None
    keyword_score: float | None = None
    relevant: bool = True
    """Whether the search found anything relevant (:func:`found_relevant`), the same for
    every hit of one search: the RAG graph answers "not found" without a model call when
    it is False."""


def keyword_unit(chunks: int) -> float:
    """The keyword bar's unit: BM25 of one query term that a single chunk of ``chunks`` has.

    That is idf(N, df=1) * (k1 + 1), the ceiling of the rarest term's contribution; a score
    in these units does not drift with the collection's size as raw BM25 does (idf grows
    with ln N).
    """
    return keyword_index.idf(max(chunks, 1), 1) * (keyword_index.K1 + 1)


def found_relevant(
    best_similarity: float | None,
    best_keyword: float | None,
    *,
    min_similarity: float | None,
    min_keyword: float | None,
    unit: float,
) -> bool:
    """Whether a search found something relevant enough to answer from.

    Yes when the best chunk by similarity reaches ``min_similarity`` (None: any similarity
    does), or the best chunk by BM25 reaches ``min_keyword`` keyword units (``unit``, see
    :func:`keyword_unit`; None: BM25 alone never suffices). Both are the best of
    their whole leg, so the verdict holds for every hit of the search: a right chunk ranked
    high by BM25 but low by similarity (or the other way round) is kept whenever the
    question itself clears the bar. Calibrated per embedding model in bench/rag_quality.py.
    """
    if best_similarity is not None and (
        min_similarity is None or best_similarity >= min_similarity
    ):
        return True
    if best_keyword is None or best_keyword <= 0 or min_keyword is None:
        return False
    return best_keyword >= min_keyword * unit


class KnowledgeService:
    """The knowledge base of every org, behind org checks."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        vectors: VectorStore,
        embeddings: EmbeddingRegistry,
        accountant: Accountant,
        jobs: JobQueue,
        provider_keys: ProviderKeyStore,
        limits: LimitEnforcer,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._vectors = vectors
        self._embeddings = embeddings
        self._accountant = accountant
        self._jobs = jobs
        self._keys = provider_keys
        self._limits = limits
        # Searches read a collection's record from here, not SQL (org_cache_seconds): the
        # record changes only when a re-embedding swaps it, and a search that hits the
        # dropped collection reads the fresh record and retries.
        self._search_collections: dict[tuple[str, str], tuple[float, KnowledgeCollection]] = {}
        jobs.register(INGEST_TASK, self._run_ingest)
        jobs.register(REEMBED_TASK, self._run_reembed)

    # --- collections ---------------------------------------------------------------

    async def collections(self, principal: Principal) -> list[KnowledgeCollection]:
        """The org's collections."""
        async with self._sessions() as session:
            return await registry.list_collections(session, principal.org_id)

    async def create_collection(
        self, principal: Principal, name: str, options: CollectionOptions
    ) -> KnowledgeCollection:
        """Create a collection with its embedding, distance and chunking (409 if it exists)."""
        async with self._sessions() as session:
            if await registry.get_collection(session, principal.org_id, name) is not None:
                raise ApiError(409, "collection_exists", f"collection {name!r} already exists")
        return await self._ensure_collection(principal, name, options)

    async def _ensure_collection(
        self, principal: Principal, name: str, options: CollectionOptions | None = None
    ) -> KnowledgeCollection:
        options = options or CollectionOptions()
        async with self._sessions() as session:
            found = await registry.get_collection(session, principal.org_id, name)
            if found is not None:
                return found
        model = await self._embedding_spec(principal.org_id, options.embedding_model)
        size = options.chunk_size or self._settings.knowledge_chunk_size
        overlap = (
            options.chunk_overlap
            if options.chunk_overlap is not None
            else min(self._settings.knowledge_chunk_overlap, size // 2)
        )
        if overlap >= size:
            raise ApiError(422, "invalid_request", "chunk_overlap must be smaller than chunk_size")
        collection_id = str(uuid.uuid4())
        collection = KnowledgeCollection(
            id=collection_id,
            org_id=principal.org_id,
            name=name,
            embedding_model=model.name,
            embedding_dim=model.dimension,
            distance=options.distance or "cosine",
            chunk_size=size,
            chunk_overlap=overlap,
            vector_collection=registry.vector_collection_name(collection_id),
        )
        try:
            async with session_scope(self._sessions) as session:
                session.add(collection)
        except IntegrityError:  # created concurrently: use that one
            async with self._sessions() as session:
                found = await registry.get_collection(session, principal.org_id, name)
            if found is None:
                raise
            return found
        return collection

    async def _collection(self, org_id: str, name: str) -> KnowledgeCollection | None:
        async with self._sessions() as session:
            found = await registry.get_collection(session, org_id, name)
        if found is not None:
            expires = time.monotonic() + self._settings.org_cache_seconds
            self._search_collections[(org_id, name)] = (expires, found)
        else:
            self._search_collections.pop((org_id, name), None)
        return found

    async def _search_collection(self, org_id: str, name: str) -> KnowledgeCollection | None:
        """The collection's record for a search: cached (absent ones are always re-read)."""
        cached = self._search_collections.get((org_id, name))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return await self._collection(org_id, name)

    async def _embedding_spec(self, org_id: str, name: str | None) -> Any:
        org_key = await self._keys.get(org_id, "openai")
        try:
            return self._embeddings.spec(name, org_key=org_key)
        except UnknownEmbeddingModel as exc:
            raise ApiError(400, "unknown_embedding_model", str(exc)) from exc

    async def _embedder(self, org_id: str, model: str, context: CallContext) -> Embeddings:
        """The collection's embedder, accounted to ``context``, with the org's own key.

        Its usage counts against the caller's limits: settling the request's hold, or, for
        background work (ingestion, re-embedding), added as it comes.
        """
        context = await self._limits.tab(context)
        org_key = await self._keys.get(org_id, "openai")
        try:
            spec = self._embeddings.spec(model, org_key=org_key)
            inner = self._embeddings.embeddings(model, org_key=org_key)
        except UnknownEmbeddingModel as exc:
            raise ApiError(400, "unknown_embedding_model", str(exc)) from exc
        return AccountedEmbeddings(inner, spec=spec, accountant=self._accountant, context=context)

    # --- documents -----------------------------------------------------------------

    async def upload(
        self,
        principal: Principal,
        files: Sequence[UploadedFile],
        *,
        metadata: Any,
        collection_name: str,
        request_id: str | None,
    ) -> UploadResult:
        """Accept files: refuse bad ones, skip duplicates, ingest the rest (small ones inline)."""
        try:
            user_metadata = validate_user_metadata(metadata)
        except InvalidMetadata as exc:
            raise ApiError(422, "invalid_metadata", str(exc)) from exc
        # An org (or user) whose token or cost limit is used up uploads nothing (429) until
        # its window resets; accepted files are ingested in full and counted as they embed.
        await self._limits.hold_tokens(
            principal, self.context(principal, INGEST_TASK, request_id), lambda: (0, Decimal(0))
        )
        collection = await self._ensure_collection(principal, collection_name)
        result = UploadResult()
        waits: list[tuple[KnowledgeDocument, str]] = []
        for upload in files:
            accepted = await self._accept(principal, collection, upload, user_metadata, result)
            if accepted is None:
                continue
            document, duplicate = accepted
            if duplicate:
                result.documents.append((document, True))
                continue
            await self._jobs.enqueue(
                INGEST_TASK,
                {"document_id": document.id, "request_id": request_id},
                org_id=principal.org_id,
                job_id=document.id,
            )
            waits.append((document, upload.filename))
        for document, filename in waits:
            await self._finish_inline(document, filename, result)
        return result

    async def _accept(
        self,
        principal: Principal,
        collection: KnowledgeCollection,
        upload: UploadedFile,
        metadata: dict[str, Any],
        result: UploadResult,
    ) -> tuple[KnowledgeDocument, bool] | None:
        """Register one file (or find its duplicate); ``None`` after recording its error."""
        name = upload.filename or "upload"
        limit = self._settings.knowledge_max_file_bytes
        if len(upload.data) > limit:
            result.errors.append(
                FileError(name, 413, "file_too_large", f"{name}: larger than {limit} bytes")
            )
            return None
        if not upload.data.strip():
            result.errors.append(
                FileError(name, 422, "empty_document", f"{name}: the file is empty")
            )
            return None
        try:
            kind = await asyncio.to_thread(sniff_type, upload.data, name, upload.content_type)
        except LoaderError as exc:
            result.errors.append(FileError(name, exc.status, exc.code, exc.message))
            return None
        sha = hashlib.sha256(upload.data).hexdigest()
        async with session_scope(self._sessions) as session:
            existing = await registry.find_by_sha(session, collection.id, sha)
            if existing is not None and existing.status in registry.ACTIVE_STATUSES:
                return existing, True
            if existing is not None:  # failed or cancelled before: try again from scratch
                await session.delete(existing)
                await session.flush()
            document = KnowledgeDocument(
                id=str(uuid.uuid4()),
                org_id=principal.org_id,
                collection_id=collection.id,
                filename=name[:512],
                content_type=CONTENT_TYPES[kind],
                size_bytes=len(upload.data),
                sha256=sha,
                status="processing",
                chunks=0,
                metadata_=metadata,
                created_by=principal.user_id,
            )
            session.add(document)
            session.add(KnowledgeFile(document_id=document.id, content=upload.data))
        return document, False

    async def _finish_inline(
        self, document: KnowledgeDocument, filename: str, result: UploadResult
    ) -> None:
        """Wait for a small file's ingestion; a failed one is reported and not kept."""
        if document.size_bytes > self._settings.knowledge_inline_max_bytes:
            result.documents.append((document, False))
            return
        await self._jobs.wait(document.id, self._settings.knowledge_inline_wait_seconds)
        async with session_scope(self._sessions) as session:
            current = await session.get(KnowledgeDocument, document.id)
            if current is None:
                return
            if current.status == "failed":
                status = _ERROR_STATUS.get(current.error_code or "", 422)
                result.errors.append(
                    FileError(
                        filename,
                        status,
                        current.error_code or "ingestion_failed",
                        current.error_message or f"{filename}: could not be ingested",
                    )
                )
                await session.delete(current)
                return
        result.documents.append((current, False))

    async def get(self, principal: Principal, document_id: str) -> KnowledgeDocument:
        """The org's document, or 404."""
        async with self._sessions() as session:
            document = await registry.get_document(session, principal.org_id, document_id)
        if document is None:
            raise ApiError(404, "document_not_found", f"no document {document_id!r}")
        return document

    async def collection_names(self, org_id: str) -> dict[str, str]:
        """Collection id → name of the org (for listing documents)."""
        async with self._sessions() as session:
            return {c.id: c.name for c in await registry.list_collections(session, org_id)}

    async def list_documents(
        self,
        principal: Principal,
        *,
        collection: str | None,
        status: str | None,
        metadata: dict[str, Any],
        limit: int,
        offset: int,
    ) -> tuple[list[KnowledgeDocument], int]:
        """A page of the org's documents."""
        collection_id: str | None = None
        if collection is not None:
            found = await self._collection(principal.org_id, collection)
            if found is None:
                return [], 0
            collection_id = found.id
        async with self._sessions() as session:
            return await registry.list_documents(
                session,
                principal.org_id,
                collection_id=collection_id,
                status=status,
                metadata=metadata,
                limit=limit,
                offset=offset,
            )

    async def delete(self, principal: Principal, document_id: str) -> None:
        """Delete a document with its chunks, postings and vectors (cancels its ingestion)."""
        document = await self.get(principal, document_id)
        await self._jobs.cancel(document.id)
        async with session_scope(self._sessions) as session:
            collection = await registry.collection_by_id(session, document.collection_id)
            ids = await registry.chunk_ids(session, document.id)
            await keyword_index.remove_chunks(session, ids)
            await registry.delete_chunks(session, ids)
            current = await session.get(KnowledgeDocument, document.id)
            if current is not None:
                await session.delete(current)
        if collection is not None:
            for name in _vector_names(collection):
                await self._vectors.delete(name, _space(collection), ids)

    async def cancel(self, principal: Principal, document_id: str) -> KnowledgeDocument:
        """Stop a document's ingestion (409 when it is not processing)."""
        document = await self.get(principal, document_id)
        if document.status != "processing":
            raise ApiError(409, "not_processing", f"document {document_id!r} is {document.status}")
        async with session_scope(self._sessions) as session:
            await registry.set_status(
                session, document.id, "cancelled", error=("cancelled", "cancelled by the user")
            )
        await self._jobs.cancel(document.id)
        return await self.get(principal, document_id)

    async def reindex(
        self, principal: Principal, document_id: str, request_id: str | None
    ) -> KnowledgeDocument:
        """Parse, split and embed a document again from its stored file."""
        document = await self.get(principal, document_id)
        if document.status == "processing":
            raise ApiError(409, "already_processing", f"document {document_id!r} is processing")
        async with session_scope(self._sessions) as session:
            await registry.set_status(session, document.id, "processing")
        await self._jobs.enqueue(
            INGEST_TASK,
            {"document_id": document.id, "request_id": request_id},
            org_id=principal.org_id,
            job_id=document.id,
        )
        return await self.get(principal, document_id)

    async def recover(self) -> int:
        """Queue again what was accepted and not finished before a restart."""
        async with self._sessions() as session:
            pending = await registry.unfinished_documents(session)
        for document in pending:
            await self._jobs.enqueue(
                INGEST_TASK,
                {"document_id": document.id, "request_id": None},
                org_id=document.org_id,
                job_id=document.id,
            )
        return len(pending)

    async def _run_ingest(self, payload: dict[str, Any]) -> None:
        """The ingestion job: index one document, record how it ended."""
        document_id = str(payload["document_id"])
        async with self._sessions() as session:
            document = await session.get(KnowledgeDocument, document_id)
            if document is None or document.status != "processing":
                return
            collection = await registry.collection_by_id(session, document.collection_id)
            data = await registry.read_file(session, document_id)
        if collection is None or data is None:
            return
        context = CallContext(
            org_id=document.org_id,
            user_id=document.created_by,
            route=INGEST_TASK,
            request_id=payload.get("request_id"),
        )
        error: tuple[str, str] | None = None
        try:
            targets = [
                VectorTarget(
                    collection.vector_collection,
                    await self._embedder(document.org_id, collection.embedding_model, context),
                )
            ]
            if collection.building_collection and collection.building_model:
                targets.append(
                    VectorTarget(
                        collection.building_collection,
                        await self._embedder(document.org_id, collection.building_model, context),
                    )
                )
            await ingest_document(
                document,
                collection,
                data,
                sessions=self._sessions,
                vectors=self._vectors,
                targets=targets,
                batch_size=self._settings.embedding_batch_size,
            )
            return
        except DocumentGone:
            return
        except asyncio.CancelledError:
            # A user's cancel has already marked the document; a shutdown leaves it
            # ``processing``, so the next start-up queues it again.
            raise
        except LoaderError as exc:
            error = (exc.code, exc.message)
        except ApiError as exc:
            error = (exc.code, f"{document.filename}: {exc.message}")
        except Exception as exc:
            logger.exception("ingestion of %s failed", document_id)
            error = ("embedding_failed", f"{document.filename}: {type(exc).__name__}: {exc}"[:1000])
        async with session_scope(self._sessions) as session:
            await registry.set_status(session, document_id, "failed", error=error)

    # --- search --------------------------------------------------------------------

    @staticmethod
    def context(principal: Principal, route: str, request_id: str | None) -> CallContext:
        """The accounting context of a knowledge call made for ``principal``."""
        return CallContext(
            org_id=principal.org_id,
            user_id=principal.user_id,
            route=route,
            request_id=request_id,
        )

    async def search(self, context: CallContext, query: SearchQuery) -> list[SearchHit]:
        """Find the chunks of the org's collection that answer ``query``."""
        where = None
        if query.filter is not None:
            try:
                where = validate_filter(query.filter)
            except InvalidFilter as exc:
                raise ApiError(422, "invalid_filter", str(exc)) from exc
        cached = await self._search_collection(context.org_id, query.collection)
        if cached is None:
            if query.collection == DEFAULT_COLLECTION:
                return []  # nothing uploaded yet
            raise ApiError(
                404, "collection_not_found", f"no knowledge collection {query.collection!r}"
            )
        # Each leg of a hybrid search contributes its best 2k: fusing BM25's whole tail
        # buries chunks only the embedder found (cross-lingual hits), measured in
        # bench/rag_quality.py. The two legs run concurrently.
        held = None
        if context.reservation is None and query.mode != "keyword":
            # A search of its own (not RAG's retrieval, which its query holds): the query's
            # embedding is reserved like a chat prompt, 429 when over a limit.
            def size() -> tuple[int, Decimal]:
                tokens = estimate_tokens([query.query])
                return tokens, self._accountant.prices.cost(cached.embedding_model, tokens, 0)

            context = await self._limits.hold_tokens(
                Principal(org_id=context.org_id, user_id=context.user_id), context, size
            )
            held = context.reservation
        try:
            return await self._search(context, query, cached, where)
        finally:
            if held is not None:
                held.release()  # a no-op once the embedding's usage settled it

    async def _search(
        self,
        context: CallContext,
        query: SearchQuery,
        cached: KnowledgeCollection,
        where: dict[str, Any] | None,
    ) -> list[SearchHit]:
        fetch = query.k if query.mode != "hybrid" else 2 * query.k
        collection = cached  # after a re-embedding swap: the record the vector leg used
        vector_hits: list[VectorHit] = []
        keyword_hits: list[tuple[str, float]] = []
        if query.mode == "vector":
            collection, vector_hits = await self._vector_leg(
                context, collection, query, fetch, where
            )
        elif query.mode == "keyword":
            keyword_hits = await self._keyword_leg(collection, query, fetch, where)
        else:
            (collection, vector_hits), keyword_hits = await asyncio.gather(
                self._vector_leg(context, collection, query, fetch, where),
                self._keyword_leg(collection, query, fetch, where),
            )
        relevant = await self._relevant(collection, query, vector_hits, keyword_hits)
        return await self._merge(collection, query, vector_hits, keyword_hits, relevant)

    async def _relevant(
        self,
        collection: KnowledgeCollection,
        query: SearchQuery,
        vector_hits: list[VectorHit],
        keyword_hits: list[tuple[str, float]],
    ) -> bool:
        """:func:`found_relevant` with the bars of the collection's model and the mode."""
        settings = self._settings
        best_similarity = max((hit.score for hit in vector_hits), default=None)
        min_similarity = (
            query.min_similarity
            if query.min_similarity is not None
            else settings.rag_min_similarity.get(collection.embedding_model)
        )
        if found_relevant(
            best_similarity, None, min_similarity=min_similarity, min_keyword=None, unit=0.0
        ):
            return True
        best_keyword = max((score for _, score in keyword_hits), default=None)
        if best_keyword is None or best_keyword <= 0:
            return False
        min_keyword = (
            settings.rag_min_keyword_score_keyword_mode
            if query.mode == "keyword"
            else settings.rag_min_keyword_score
        )
        return found_relevant(
            best_similarity,
            best_keyword,
            min_similarity=min_similarity,
            min_keyword=min_keyword,
            unit=keyword_unit(await self._ready_chunks(collection)),
        )

    async def _ready_chunks(self, collection: KnowledgeCollection) -> int:
        """The collection's chunk count (BM25's N, near enough), from its documents."""
        async with self._sessions() as session:
            total = await session.scalar(
                select(func.coalesce(func.sum(KnowledgeDocument.chunks), 0)).where(
                    KnowledgeDocument.collection_id == collection.id,
                    KnowledgeDocument.status == "ready",
                )
            )
        return int(total or 0)

    async def _vector_leg(
        self,
        context: CallContext,
        collection: KnowledgeCollection,
        query: SearchQuery,
        fetch: int,
        where: dict[str, Any] | None,
    ) -> tuple[KnowledgeCollection, list[VectorHit]]:
        """The vector hits, and the collection record they came from (after a swap: new)."""
        try:
            return collection, await self._vector_query(context, collection, query, fetch, where)
        except Exception:
            # A re-embedding swapped (and dropped) the Chroma collection since the record
            # was read (from SQL or the search cache): search the new one.
            fresh = await self._collection(context.org_id, query.collection)
            if fresh is None or fresh.vector_collection == collection.vector_collection:
                raise
            return fresh, await self._vector_query(context, fresh, query, fetch, where)

    async def _vector_query(
        self,
        context: CallContext,
        collection: KnowledgeCollection,
        query: SearchQuery,
        fetch: int,
        where: dict[str, Any] | None,
    ) -> list[VectorHit]:
        """Embed the query with the collection's model and ask Chroma."""
        embedder = await self._embedder(context.org_id, collection.embedding_model, context)
        vector = await embedder.aembed_query(query.query)
        return await self._vectors.search(
            collection.vector_collection,
            _space(collection),
            vector,
            k=fetch,
            where=where,
            mmr=query.mmr,
        )

    async def _keyword_leg(
        self,
        collection: KnowledgeCollection,
        query: SearchQuery,
        fetch: int,
        where: dict[str, Any] | None,
    ) -> list[tuple[str, float]]:
        """BM25 hits from SQL, limited to the chunks matching ``where`` (asked of Chroma)."""
        allowed = None
        if where is not None:
            allowed = await self._vectors.ids_matching(
                collection.vector_collection, _space(collection), where
            )
        async with self._sessions() as session:
            return await keyword_index.search(
                session, collection.id, query.query, limit=fetch, allowed=allowed
            )

    async def _merge(
        self,
        collection: KnowledgeCollection,
        query: SearchQuery,
        vector_hits: list[VectorHit],
        keyword_hits: list[tuple[str, float]],
        relevant: bool,
    ) -> list[SearchHit]:
        by_vector = {hit.chunk_id: hit for hit in vector_hits}
        by_keyword = dict(keyword_hits)
        if query.mode == "vector":
            ranked = [(hit.chunk_id, hit.score) for hit in vector_hits[: query.k]]
        elif query.mode == "keyword":
            ranked = keyword_hits[: query.k]
        else:
            ranked = reciprocal_rank_fusion(
                [[hit.chunk_id for hit in vector_hits], [cid for cid, _ in keyword_hits]]
            )[: query.k]
        missing = [cid for cid, _ in ranked if cid not in by_vector]
        hydrated = await self._hydrate(collection, missing) if missing else {}
        hits: list[SearchHit] = []
        for chunk_id, score in ranked:
            found = by_vector.get(chunk_id) or hydrated.get(chunk_id)
            if found is None:
                continue  # deleted between the two legs
            hits.append(
                SearchHit(
                    document_id=str(found.metadata.get("document_id", "")),
                    chunk_id=chunk_id,
                    text=found.text,
                    score=round(float(score), 6),
                    metadata=found.metadata,
                    vector_score=by_vector[chunk_id].score if chunk_id in by_vector else None,
                    keyword_score=by_keyword.get(chunk_id),
                    relevant=relevant,
                )
            )
        return hits

    async def _hydrate(
        self, collection: KnowledgeCollection, ids: Sequence[str]
    ) -> dict[str, VectorHit]:
        """Text and metadata of keyword-only hits, rebuilt from the registry."""
        async with self._sessions() as session:
            chunks = await registry.chunks_by_ids(session, ids)
            documents = await registry.documents_by_ids(
                session, sorted({c.document_id for c in chunks.values()})
            )
        found: dict[str, VectorHit] = {}
        for chunk_id, chunk in chunks.items():
            document = documents.get(chunk.document_id)
            if document is None or document.status != "ready":
                continue
            meta = chunk_metadata(
                document,
                collection,
                chunk_id=chunk_id,
                index=chunk.chunk_index,
                page=chunk.page,
                section=chunk.section,
            )
            found[chunk_id] = VectorHit(chunk_id=chunk_id, text=chunk.text, metadata=meta, score=0)
        return found

    # --- re-embedding --------------------------------------------------------------

    async def reembed(
        self,
        principal: Principal,
        collection_name: str,
        model: str | None,
        request_id: str | None,
        *,
        queue: bool = True,
    ) -> KnowledgeCollection:
        """Rebuild a collection's vectors with ``model`` (a new Chroma collection, then swap).

        ``queue=False`` only marks the rebuild; the caller runs :meth:`run_reembed` (CLI).
        """
        collection = await self._collection(principal.org_id, collection_name)
        if collection is None:
            raise ApiError(
                404, "collection_not_found", f"no knowledge collection {collection_name!r}"
            )
        if collection.building_collection:
            raise ApiError(409, "reembed_running", "a re-embedding of this collection is running")
        spec = await self._embedding_spec(principal.org_id, model)
        async with session_scope(self._sessions) as session:
            row = await session.get(KnowledgeCollection, collection.id, with_for_update=True)
            assert row is not None
            row.building_collection = registry.vector_collection_name(row.id)
            row.building_model = spec.name
        if not queue:
            return row
        await self._jobs.enqueue(
            REEMBED_TASK,
            {
                "collection_id": collection.id,
                "user_id": principal.user_id,
                "request_id": request_id,
            },
            org_id=principal.org_id,
            job_id=f"reembed:{collection.id}",
        )
        found = await self._collection(principal.org_id, collection_name)
        assert found is not None
        return found

    async def run_reembed(self, collection_id: str, user_id: str) -> None:
        """Re-embed now (the CLI calls this directly; the job calls it in the background)."""
        await self._run_reembed({"collection_id": collection_id, "user_id": user_id})

    async def _run_reembed(self, payload: dict[str, Any]) -> None:
        from knowledge.reembed import rebuild_collection

        await rebuild_collection(
            str(payload["collection_id"]),
            sessions=self._sessions,
            vectors=self._vectors,
            embedder_for=lambda org_id, model, context: self._embedder(org_id, model, context),
            user_id=str(payload.get("user_id") or "system"),
            request_id=payload.get("request_id"),
            batch_size=self._settings.embedding_batch_size,
        )
        # This instance searches the new collection at once (others within the cache TTL,
        # or at their first search of the dropped one).
        collection_id = str(payload["collection_id"])
        for key, (_, cached) in list(self._search_collections.items()):
            if cached.id == collection_id:
                del self._search_collections[key]


_ERROR_STATUS = {
    "unsupported_media_type": 415,
    "file_too_large": 413,
    "empty_document": 422,
    "unparseable_document": 422,
    "embedding_failed": 502,
    "unknown_embedding_model": 400,
    "cancelled": 409,
}


def _space(collection: KnowledgeCollection) -> Distance:
    return space_of(collection.distance)


def _vector_names(collection: KnowledgeCollection) -> list[str]:
    names = [collection.vector_collection]
    if collection.building_collection:
        names.append(collection.building_collection)
    return names
