"""A search's questions to Chroma, asked of the record a re-embedding swap may have replaced.

The query is embedded with the collection's model (accounted to the search), then Chroma
is asked for hits, nearest ids or the ids a filter matches. A record read before a swap
(from the search cache, maybe on another instance) names a dropped Chroma collection: it
reads as empty, or, dropped in the middle of the call, fails in Chroma's words ("missing
segment"). So when Chroma finds nothing or fails, the record is read again and, if it was
swapped, the question is asked of the new collection (embedded again if its model changed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sized
from typing import Any, TypeVar

from accounting.events import CallContext
from db.models import KnowledgeCollection
from knowledge.search import SearchQuery
from knowledge.vectors import VectorHit, VectorStore, space_of
from services.knowledge.collections import Collections
from services.knowledge.embedders import KnowledgeEmbedders

T = TypeVar("T")
"""What a question with the query's vector lists (hits, or ids and similarities)."""
C = TypeVar("C", bound=Sized)
"""What a question to Chroma answers (empty: maybe a dropped collection)."""


class VectorLeg:
    """Embeds a search's query and asks Chroma, following a re-embedding swap."""

    def __init__(
        self, *, vectors: VectorStore, collections: Collections, embedders: KnowledgeEmbedders
    ) -> None:
        self._vectors = vectors
        self._collections = collections
        self._embedders = embedders

    async def embed(
        self, context: CallContext, collection: KnowledgeCollection, query: SearchQuery
    ) -> list[float]:
        """The query embedded by the collection's model, accounted to ``context``."""
        embedder = await self._embedders.embedder(
            context.org_id, collection.embedding_model, context
        )
        return await embedder.aembed_query(query.query)

    async def hits(
        self,
        context: CallContext,
        collection: KnowledgeCollection,
        query: SearchQuery,
        vector: list[float],
        where: dict[str, Any] | None,
    ) -> tuple[KnowledgeCollection, list[VectorHit]]:
        """Chroma's closest chunks with texts and metadata (MMR if asked); the record used."""

        async def ask(record: KnowledgeCollection, vector: list[float]) -> list[VectorHit]:
            space = space_of(record.distance)
            return await self._vectors.search(
                record.vector_collection,
                space,
                vector,
                k=query.vector_fetch,
                where=where,
                mmr=query.mmr,
            )

        return await self._with_vector(context, collection, query, vector, ask)

    async def nearest(
        self,
        context: CallContext,
        collection: KnowledgeCollection,
        query: SearchQuery,
        vector: list[float],
        where: dict[str, Any] | None,
    ) -> tuple[KnowledgeCollection, list[tuple[str, float]]]:
        """Only the ids and similarities Chroma finds (texts come from the registry)."""

        async def ask(record: KnowledgeCollection, vector: list[float]) -> list[tuple[str, float]]:
            space = space_of(record.distance)
            return await self._vectors.nearest(
                record.vector_collection, space, vector, k=query.vector_fetch, where=where
            )

        return await self._with_vector(context, collection, query, vector, ask)

    async def ids_matching(
        self, org_id: str, collection: KnowledgeCollection, name: str, where: dict[str, Any]
    ) -> set[str]:
        """Ids of the chunks whose metadata matches ``where`` (a keyword search's filter)."""

        async def matching(record: KnowledgeCollection) -> set[str]:
            return await self._vectors.ids_matching(
                record.vector_collection, space_of(record.distance), where
            )

        _, ids = await self._on_current(org_id, name, collection, matching)
        return ids

    async def _with_vector(
        self,
        context: CallContext,
        collection: KnowledgeCollection,
        query: SearchQuery,
        vector: list[float],
        ask: Callable[[KnowledgeCollection, list[float]], Awaitable[list[T]]],
    ) -> tuple[KnowledgeCollection, list[T]]:
        """``ask`` with ``vector``, or with a new embedding when a swap changed the model."""

        async def on(record: KnowledgeCollection) -> list[T]:
            if record.embedding_model == collection.embedding_model:
                return await ask(record, vector)
            return await ask(record, await self.embed(context, record, query))

        return await self._on_current(context.org_id, query.collection, collection, on)

    async def _on_current(
        self,
        org_id: str,
        name: str,
        collection: KnowledgeCollection,
        call: Callable[[KnowledgeCollection], Awaitable[C]],
    ) -> tuple[KnowledgeCollection, C]:
        """``call`` for ``collection``; again for the stored record if a swap replaced it.

        Chroma finding nothing or failing costs one SQL read of the record (an empty
        collection or a filter nothing matches pays it too).
        """
        try:
            found = await call(collection)
        except Exception:
            if (fresh := await self._swapped(org_id, name, collection)) is None:
                raise
            return fresh, await call(fresh)
        if not found and (fresh := await self._swapped(org_id, name, collection)):
            return fresh, await call(fresh)
        return collection, found

    async def _swapped(
        self, org_id: str, name: str, collection: KnowledgeCollection
    ) -> KnowledgeCollection | None:
        """The record as stored now, if a re-embedding swapped its vectors since ``collection``."""
        fresh = await self._collections.fresh(org_id, name)
        if fresh is None or fresh.vector_collection == collection.vector_collection:
            return None
        return fresh
