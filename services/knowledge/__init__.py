"""Knowledge-base use cases: collections, upload, the ingest job, search, re-embedding.

Routes and the RAG graph call :class:`KnowledgeService`, a thin facade over one module
per job: ``collections`` (and the cache searches read), ``intake`` (upload → accept →
enqueue, the documents' life), ``ingest`` (the job body), ``search`` (hybrid search) and
``reembed``. Every access checks the org; ingestion runs through the job queue (bounded,
fair between orgs) and every embedding call is accounted. The job handlers are not
registered here: ``services.job_table`` maps the task names to :meth:`run_ingest_job`
and :meth:`run_reembed_job`, and the wiring registers them before the queue starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounting.accountant import Accountant
from accounting.events import CallContext
from auth.tokens import Principal
from core.config import Settings
from db.models import KnowledgeCollection, KnowledgeDocument
from jobs.queue import JobQueue
from knowledge.collections import DEFAULT_COLLECTION, CollectionOptions
from knowledge.search import SearchHit, SearchMode, SearchQuery, found_relevant, keyword_unit
from knowledge.vectors import VectorStore
from limits.enforcer import LimitEnforcer
from providers.embeddings import EmbeddingRegistry
from providers.keys import ProviderKeyStore
from services.knowledge.collections import Collections
from services.knowledge.embedders import KnowledgeEmbedders
from services.knowledge.ingest import IngestJob
from services.knowledge.intake import (
    INGEST_TASK,
    FileError,
    Intake,
    UploadedFile,
    UploadResult,
    call_context,
)
from services.knowledge.reembed import REEMBED_TASK, Reembedding
from services.knowledge.rerank import Reranker, RerankOutcome
from services.knowledge.search import Found, Search

__all__ = [
    "DEFAULT_COLLECTION",
    "INGEST_TASK",
    "REEMBED_TASK",
    "CollectionOptions",
    "FileError",
    "Found",
    "KnowledgeService",
    "RerankOutcome",
    "Reranker",
    "SearchHit",
    "SearchMode",
    "SearchQuery",
    "UploadResult",
    "UploadedFile",
    "found_relevant",
    "keyword_unit",
]


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
        reranker: Reranker | None = None,
    ) -> None:
        embedders = KnowledgeEmbedders(
            embeddings=embeddings, accountant=accountant, provider_keys=provider_keys, limits=limits
        )
        self._collections = Collections(settings=settings, sessions=sessions, embedders=embedders)
        self._intake = Intake(
            settings=settings,
            sessions=sessions,
            vectors=vectors,
            jobs=jobs,
            limits=limits,
            collections=self._collections,
        )
        self._ingest = IngestJob(
            settings=settings, sessions=sessions, vectors=vectors, embedders=embedders
        )
        self._search = Search(
            settings=settings,
            sessions=sessions,
            vectors=vectors,
            accountant=accountant,
            limits=limits,
            collections=self._collections,
            embedders=embedders,
            reranker=reranker,
        )
        self._reembedding = Reembedding(
            settings=settings,
            sessions=sessions,
            vectors=vectors,
            jobs=jobs,
            collections=self._collections,
            embedders=embedders,
        )

    # --- collections ---------------------------------------------------------------

    async def collections(self, principal: Principal) -> list[KnowledgeCollection]:
        """The org's collections."""
        return await self._collections.list(principal.org_id)

    async def create_collection(
        self, principal: Principal, name: str, options: CollectionOptions
    ) -> KnowledgeCollection:
        """Create a collection with its embedding, distance and chunking (409 if it exists)."""
        return await self._collections.create(principal, name, options)

    async def collection_names(self, org_id: str) -> dict[str, str]:
        """Collection id → name of the org (for listing documents)."""
        return await self._collections.names(org_id)

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
        return await self._intake.upload(
            principal,
            files,
            metadata=metadata,
            collection_name=collection_name,
            request_id=request_id,
        )

    async def get(self, principal: Principal, document_id: str) -> KnowledgeDocument:
        """The org's document, or 404."""
        return await self._intake.get(principal, document_id)

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
        return await self._intake.list_documents(
            principal,
            collection=collection,
            status=status,
            metadata=metadata,
            limit=limit,
            offset=offset,
        )

    async def delete(self, principal: Principal, document_id: str) -> None:
        """Delete a document with its chunks, postings and vectors (cancels its ingestion)."""
        await self._intake.delete(principal, document_id)

    async def cancel(self, principal: Principal, document_id: str) -> KnowledgeDocument:
        """Stop a document's ingestion (409 when it is not processing)."""
        return await self._intake.cancel(principal, document_id)

    async def reindex(
        self, principal: Principal, document_id: str, request_id: str | None
    ) -> KnowledgeDocument:
        """Parse, split and embed a document again from its stored file."""
        return await self._intake.reindex(principal, document_id, request_id)

    async def recover(self) -> int:
        """Queue again what was accepted and not finished before a restart."""
        return await self._intake.recover()

    # --- search --------------------------------------------------------------------

    @staticmethod
    def context(principal: Principal, route: str, request_id: str | None) -> CallContext:
        """The accounting context of a knowledge call made for ``principal``."""
        return call_context(principal, route, request_id)

    async def search(self, context: CallContext, query: SearchQuery) -> list[SearchHit]:
        """Find the chunks of the org's collection that answer ``query``."""
        return await self._search.search(context, query)

    async def find(self, context: CallContext, query: SearchQuery) -> Found:
        """:meth:`search`, with what its rerank stage did (``query.rerank``)."""
        return await self._search.find(context, query)

    def warm_keyword_index(self) -> asyncio.Task[int] | None:
        """Start reading the largest collections' common keyword postings (background)."""
        return self._search.warm_keyword_index()

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
        return await self._reembedding.start(
            principal, collection_name, model, request_id, queue=queue
        )

    async def run_reembed(self, collection_id: str, user_id: str) -> None:
        """Re-embed now (the CLI calls this directly; the job calls it in the background)."""
        await self._reembedding.run({"collection_id": collection_id, "user_id": user_id})

    # --- job handlers (registered by services.job_table) ---------------------------

    async def run_ingest_job(self, payload: dict[str, Any]) -> None:
        """The :data:`INGEST_TASK` job: index one document, record how it ended."""
        await self._ingest.run(payload)

    async def run_reembed_job(self, payload: dict[str, Any]) -> None:
        """The :data:`REEMBED_TASK` job: rebuild a collection's vectors and swap."""
        await self._reembedding.run(payload)

    async def abandon_ingest_job(self, payload: dict[str, Any], reason: str) -> None:
        """The queue gave up on an ingestion: the document ends ``failed``, saying why."""
        await self._ingest.abandon(payload, reason)

    async def abandon_reembed_job(self, payload: dict[str, Any], reason: str) -> None:
        """The queue gave up on a re-embedding: the collection keeps its vectors."""
        await self._reembedding.abandon(payload, reason)
