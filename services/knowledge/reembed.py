"""Re-embedding a collection with another model: mark it, queue the rebuild, run it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth.tokens import Principal
from core.config import Settings
from core.errors import ApiError
from db.models import KnowledgeCollection
from db.session import session_scope
from jobs.queue import JobQueue
from knowledge import registry
from knowledge.reembed import abandon_rebuild, rebuild_collection
from knowledge.vectors import VectorStore
from services.knowledge.collections import Collections
from services.knowledge.embedders import KnowledgeEmbedders

REEMBED_TASK = "knowledge.reembed"


class Reembedding:
    """Starts re-embeddings (API, CLI) and runs :data:`REEMBED_TASK` jobs."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        vectors: VectorStore,
        jobs: JobQueue,
        collections: Collections,
        embedders: KnowledgeEmbedders,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._vectors = vectors
        self._jobs = jobs
        self._collections = collections
        self._embedders = embedders

    async def start(
        self,
        principal: Principal,
        collection_name: str,
        model: str | None,
        request_id: str | None,
        *,
        queue: bool = True,
    ) -> KnowledgeCollection:
        """Mark the rebuild (a new Chroma collection) and queue it unless ``queue=False``."""
        collection = await self._collections.fresh(principal.org_id, collection_name)
        if collection is None:
            raise ApiError(
                404, "collection_not_found", f"no knowledge collection {collection_name!r}"
            )
        if collection.building_collection:
            raise ApiError(409, "reembed_running", "a re-embedding of this collection is running")
        spec = await self._embedders.spec(principal.org_id, model)
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
        found = await self._collections.fresh(principal.org_id, collection_name)
        assert found is not None
        return found

    async def abandon(self, payload: dict[str, Any], _reason: str) -> None:
        """The queue gave up: drop the half-built collection, keep the one in use."""
        collection_id = str(payload["collection_id"])
        await abandon_rebuild(collection_id, sessions=self._sessions, vectors=self._vectors)
        self._collections.forget(collection_id)

    async def run(self, payload: dict[str, Any]) -> None:
        """The job body (the CLI calls it directly): rebuild, then swap."""
        collection_id = str(payload["collection_id"])
        await rebuild_collection(
            collection_id,
            sessions=self._sessions,
            vectors=self._vectors,
            embedder_for=self._embedders.embedder,
            user_id=str(payload.get("user_id") or "system"),
            request_id=payload.get("request_id"),
            batch_size=self._settings.embedding_batch_size,
        )
        # This instance searches the new collection at once (others within the cache TTL,
        # or at their first search of the dropped one).
        self._collections.forget(collection_id)
