"""Intake: upload → accept (or find the duplicate) → enqueue the ingest job; documents' life.

Small files are waited for, so their answer says ``ready`` (or why they failed); large
ones answer ``processing``. Every path into ingestion goes through :meth:`Intake.enqueue`.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounting.events import CallContext
from auth.tokens import Principal
from core.config import Settings
from core.errors import ApiError
from db.models import KnowledgeCollection, KnowledgeDocument, KnowledgeFile
from db.session import session_scope
from jobs.queue import JobQueue
from knowledge import keyword_index, registry
from knowledge.collections import vector_names
from knowledge.filenames import safe_filename
from knowledge.metadata import InvalidMetadata, validate_user_metadata
from knowledge.vectors import VectorStore, space_of
from limits.enforcer import LimitEnforcer
from loaders import CONTENT_TYPES, LoaderError, sniff_type
from services.knowledge.collections import Collections

INGEST_TASK = "knowledge.ingest"
_ACCEPT_ATTEMPTS = 3

ERROR_STATUS = {
    "unsupported_media_type": 415,
    "file_too_large": 413,
    "empty_document": 422,
    "unparseable_document": 422,
    "embedding_failed": 502,
    "unknown_embedding_model": 400,
    "cancelled": 409,
}
"""The HTTP status of a failed ingestion's error code (an inline upload's answer)."""


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


def call_context(principal: Principal, route: str, request_id: str | None) -> CallContext:
    """The accounting context of a knowledge call made for ``principal``."""
    return CallContext(
        org_id=principal.org_id, user_id=principal.user_id, route=route, request_id=request_id
    )


class Intake:
    """Uploads and the documents' life cycle (list, delete, cancel, re-index, recover)."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        vectors: VectorStore,
        jobs: JobQueue,
        limits: LimitEnforcer,
        collections: Collections,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._vectors = vectors
        self._jobs = jobs
        self._limits = limits
        self._collections = collections

    async def enqueue(self, document: KnowledgeDocument, request_id: str | None) -> None:
        """Queue the ingestion of ``document`` (named by its id: cancel and wait use it)."""
        await self._jobs.enqueue(
            INGEST_TASK,
            {"document_id": document.id, "request_id": request_id},
            org_id=document.org_id,
            job_id=document.id,
        )

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
            principal, call_context(principal, INGEST_TASK, request_id), lambda: (0, Decimal(0))
        )
        collection = await self._collections.ensure(principal.org_id, collection_name)
        result = UploadResult()
        waits: list[KnowledgeDocument] = []
        for upload in files:
            accepted = await self._accept(principal, collection, upload, user_metadata, result)
            if accepted is None:
                continue
            document, duplicate = accepted
            if duplicate:
                result.documents.append((document, True))
                continue
            await self.enqueue(document, request_id)
            waits.append(document)
        for document in waits:
            await self._finish_inline(document, result)
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
        name = safe_filename(upload.filename)
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
        document = KnowledgeDocument(
            id=str(uuid.uuid4()),
            org_id=principal.org_id,
            collection_id=collection.id,
            filename=name,
            content_type=CONTENT_TYPES[kind],
            size_bytes=len(upload.data),
            sha256=hashlib.sha256(upload.data).hexdigest(),
            status="processing",
            chunks=0,
            metadata_=metadata,
            created_by=principal.user_id,
        )
        for _ in range(_ACCEPT_ATTEMPTS):
            accepted = await self._register(document, upload.data)
            if accepted is not None:
                return accepted
        raise ApiError(409, "upload_conflict", f"{name}: the same content is changing; retry")

    async def _register(
        self, document: KnowledgeDocument, data: bytes
    ) -> tuple[KnowledgeDocument, bool] | None:
        """Insert ``document`` unless its content is there; None: try again.

        Race-safe: of concurrent uploads of one content, one insert wins the unique
        (collection, sha256) constraint; the others roll back their own transaction (they
        wrote nothing else, and nothing was enqueued) and answer the winner as a duplicate,
        as if they had come second.
        """
        try:
            async with session_scope(self._sessions) as session:
                existing = await registry.find_by_sha(
                    session, document.collection_id, document.sha256
                )
                if existing is not None and existing.status in registry.ACTIVE_STATUSES:
                    return existing, True
                if existing is not None:  # failed or cancelled before: try again from scratch
                    await session.delete(existing)
                    await session.flush()
                session.add(document)
                session.add(KnowledgeFile(document_id=document.id, content=data))
        except IntegrityError:
            async with self._sessions() as session:
                winner = await registry.find_by_sha(
                    session, document.collection_id, document.sha256
                )
            if winner is not None and winner.status in registry.ACTIVE_STATUSES:
                return winner, True
            return None
        return document, False

    async def _finish_inline(self, document: KnowledgeDocument, result: UploadResult) -> None:
        """Wait for a small file's ingestion; a failed one is reported and not kept."""
        if document.size_bytes > self._settings.knowledge_inline_max_bytes:
            result.documents.append((document, False))
            return
        await self._jobs.wait(document.id, self._settings.knowledge_inline_wait_seconds)
        filename = document.filename
        async with session_scope(self._sessions) as session:
            current = await session.get(KnowledgeDocument, document.id)
            if current is None:
                return
            if current.status == "failed":
                result.errors.append(
                    FileError(
                        filename,
                        ERROR_STATUS.get(current.error_code or "", 422),
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
            found = await self._collections.fresh(principal.org_id, collection)
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
            for name in vector_names(collection):
                await self._vectors.delete(name, space_of(collection.distance), ids)

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
        await self.enqueue(document, request_id)
        return await self.get(principal, document_id)

    async def recover(self) -> int:
        """Queue again what was accepted and not finished before a restart."""
        async with self._sessions() as session:
            pending = await registry.unfinished_documents(session)
        for document in pending:
            await self.enqueue(document, None)
        return len(pending)
