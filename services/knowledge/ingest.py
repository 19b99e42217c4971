"""The ingest job's body: index one accepted document and record how it ended."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounting.events import CallContext
from core.config import Settings
from core.errors import ApiError
from db.models import KnowledgeCollection, KnowledgeDocument
from db.session import session_scope
from knowledge import registry
from knowledge.ingest import DocumentGone, VectorTarget, ingest_document
from knowledge.vectors import VectorStore, space_of
from loaders import LoaderError
from services.knowledge.embedders import KnowledgeEmbedders
from services.knowledge.intake import INGEST_TASK

logger = logging.getLogger(__name__)


class IngestJob:
    """Runs :data:`~services.knowledge.intake.INGEST_TASK` jobs (payload: ``document_id``)."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        vectors: VectorStore,
        embedders: KnowledgeEmbedders,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._vectors = vectors
        self._embedders = embedders

    async def abandon(self, payload: dict[str, Any], reason: str) -> None:
        """The queue gave up (its workers kept dying): ``failed``, minus dead runs' vectors."""
        document_id = str(payload["document_id"])
        async with session_scope(self._sessions) as session:
            document = await session.get(KnowledgeDocument, document_id, with_for_update=True)
            if document is None or document.status != "processing":
                return
            message = f"{document.filename}: {reason}; the file may be too large or malformed"
            await registry.set_status(
                session, document_id, "failed", error=("job_abandoned", message)
            )
            collection = await registry.collection_by_id(session, document.collection_id)
        if collection is not None:
            await self._drop_orphans(document_id, collection)

    async def _drop_orphans(self, document_id: str, collection: KnowledgeCollection) -> None:
        """Delete the document's vectors the registry does not know.

        A run writes vectors before it registers them; one killed in between (kill -9, out
        of memory) leaves vectors no chunk row names, which a vector search would return
        next to the re-run's. One run of a job at a time, so no live run's vectors are here.
        """
        async with self._sessions() as session:
            known = set(await registry.chunk_ids(session, document_id))
        space = space_of(collection.distance)
        for name in filter(None, (collection.vector_collection, collection.building_collection)):
            found = await self._vectors.ids_matching(name, space, {"document_id": document_id})
            if orphans := found - known:
                logger.warning("dropping %d vectors of a dead run of %s", len(orphans), document_id)
                await self._vectors.delete(name, space, sorted(orphans))

    async def run(self, payload: dict[str, Any]) -> None:
        """Index one document; a failure is recorded on it (``failed`` with its error)."""
        document_id = str(payload["document_id"])
        async with self._sessions() as session:
            document = await session.get(KnowledgeDocument, document_id)
            if document is None or document.status != "processing":
                return
            collection = await registry.collection_by_id(session, document.collection_id)
            data = await registry.read_file(session, document_id)
        if collection is None or data is None:
            return
        await self._drop_orphans(document_id, collection)
        context = CallContext(
            org_id=document.org_id,
            user_id=document.created_by,
            route=INGEST_TASK,
            request_id=payload.get("request_id"),
        )
        error: tuple[str, str] | None = None
        try:
            # During a re-embedding, new documents go into the collection being built too.
            models = [(collection.vector_collection, collection.embedding_model)]
            if collection.building_collection and collection.building_model:
                models.append((collection.building_collection, collection.building_model))
            targets = [
                VectorTarget(name, await self._embedders.embedder(document.org_id, model, context))
                for name, model in models
            ]
            await ingest_document(
                document,
                collection,
                data,
                sessions=self._sessions,
                vectors=self._vectors,
                targets=targets,
                batch_size=self._settings.embedding_batch_size,
                headings=self._settings.knowledge_chunk_headings,
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
