"""An org's collections: list, create (race-safe), find, and the cached read searches use."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth.tokens import Principal
from core.config import Settings
from core.errors import ApiError
from db.models import KnowledgeCollection
from db.session import session_scope
from knowledge import registry
from knowledge.collections import (
    CollectionCache,
    CollectionOptions,
    InvalidChunking,
    new_collection,
)
from services.knowledge.embedders import KnowledgeEmbedders


class Collections:
    """Collections behind org checks, with the per-instance cache of search reads."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        embedders: KnowledgeEmbedders,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._embedders = embedders
        self._cache = CollectionCache(settings.org_cache_seconds)

    async def list(self, org_id: str) -> list[KnowledgeCollection]:
        """The org's collections, by name."""
        async with self._sessions() as session:
            return await registry.list_collections(session, org_id)

    async def names(self, org_id: str) -> dict[str, str]:
        """Collection id → name of the org (for listing documents)."""
        return {c.id: c.name for c in await self.list(org_id)}

    async def create(
        self, principal: Principal, name: str, options: CollectionOptions
    ) -> KnowledgeCollection:
        """Create a collection (409 ``collection_exists`` if it exists, even created just now)."""
        async with self._sessions() as session:
            if await registry.get_collection(session, principal.org_id, name) is not None:
                raise _exists(name)
        collection, created = await self._insert(principal.org_id, name, options)
        if not created:  # a concurrent create won: this one answers as if it came second
            raise _exists(name)
        return collection

    async def ensure(self, org_id: str, name: str) -> KnowledgeCollection:
        """The org's collection ``name``, created with the defaults when absent."""
        async with self._sessions() as session:
            found = await registry.get_collection(session, org_id, name)
        if found is not None:
            return found
        collection, _ = await self._insert(org_id, name, CollectionOptions())
        return collection

    async def _insert(
        self, org_id: str, name: str, options: CollectionOptions
    ) -> tuple[KnowledgeCollection, bool]:
        """Store a new collection; when one of that name won a race, that one and False.

        The insert is a transaction of its own, so losing the unique (org, name) race rolls
        back nothing else; the winner is then read back.
        """
        spec = await self._embedders.spec(org_id, options.embedding_model)
        try:
            collection = new_collection(
                org_id,
                name,
                options,
                embedding_model=spec.name,
                embedding_dim=spec.dimension,
                default_size=self._settings.knowledge_chunk_size,
                default_overlap=self._settings.knowledge_chunk_overlap,
            )
        except InvalidChunking as exc:
            raise ApiError(422, "invalid_request", str(exc)) from exc
        try:
            async with session_scope(self._sessions) as session:
                session.add(collection)
        except IntegrityError:
            async with self._sessions() as session:
                found = await registry.get_collection(session, org_id, name)
            if found is None:
                raise
            return found, False
        return collection, True

    async def fresh(self, org_id: str, name: str) -> KnowledgeCollection | None:
        """The record as stored now (and refresh the search cache with it)."""
        async with self._sessions() as session:
            found = await registry.get_collection(session, org_id, name)
        self._cache.put(org_id, name, found)
        return found

    async def for_search(self, org_id: str, name: str) -> KnowledgeCollection | None:
        """The record for a search: cached (absent ones are always re-read)."""
        return self._cache.get(org_id, name) or await self.fresh(org_id, name)

    def forget(self, collection_id: str) -> None:
        """Searches of this instance read the collection afresh (after a swap)."""
        self._cache.forget(collection_id)


def _exists(name: str) -> ApiError:
    return ApiError(409, "collection_exists", f"collection {name!r} already exists")
