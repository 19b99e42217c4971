"""The vector half of the knowledge base: LangChain ``Chroma`` stores over one Chroma client.

Each org collection has its own Chroma collection (named in the SQL registry), so no query
can reach another org's chunks. Embeddings are computed by the caller (batched and
accounted), so the stores here are built without an embedding function and cached per
Chroma collection. Chroma's client is synchronous: every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from langchain_core.documents import Document

from core.vectorstore import ChromaClientProvider

if TYPE_CHECKING:
    from langchain_chroma import Chroma

T = TypeVar("T")

Distance = Literal["cosine", "l2", "ip"]
DISTANCES: tuple[Distance, ...] = ("cosine", "l2", "ip")


@dataclass(frozen=True, slots=True)
class VectorHit:
    """A chunk found by similarity; ``score`` is a similarity (higher is closer)."""

    chunk_id: str
    text: str
    metadata: dict[str, Any]
    score: float


def space_of(distance: str) -> Distance:
    """A collection's stored distance name (cosine when unknown)."""
    return cast(Distance, distance) if distance in DISTANCES else "cosine"


def similarity(distance: float, space: Distance) -> float:
    """Turn Chroma's distance into a similarity: cosine and ip ``1 - d``, l2 ``1 / (1 + d)``."""
    if space == "l2":
        return 1.0 / (1.0 + distance)
    return 1.0 - distance


class VectorStore:
    """Adds, deletes and queries chunk vectors in per-collection Chroma collections.

    Only writes create a Chroma collection. A read of one that does not exist (nothing
    written yet, or dropped by a re-embedding swap that a caller's record predates) finds
    nothing and creates nothing: an empty answer is the caller's cue to check its record
    (``services.knowledge.vector_leg``), and no orphan collection is left behind.
    """

    def __init__(self, clients: ChromaClientProvider) -> None:
        self._clients = clients
        self._stores: dict[str, Chroma] = {}
        self._collections: dict[str, Any] = {}

    async def _store(self, name: str, space: Distance) -> Chroma | None:
        """LangChain's store over an existing collection (None: there is none)."""
        store = self._stores.get(name)
        if store is None:
            from langchain_chroma import Chroma  # imports chromadb (~1.5 s): on first use

            client = await self._clients.get()
            try:
                store = await asyncio.to_thread(
                    Chroma,
                    collection_name=name,
                    client=client,
                    collection_configuration={"hnsw": {"space": space}},
                    create_collection_if_not_exists=False,
                )
            except _not_found():
                return None
            self._stores[name] = store
        return store

    async def _collection(self, name: str, space: Distance, *, create: bool = False) -> Any:
        """The raw ``chromadb`` collection (None when absent and not ``create``)."""
        collection = self._collections.get(name)
        if collection is None:
            client = await self._clients.get()
            if create:
                collection = await asyncio.to_thread(
                    client.get_or_create_collection,
                    name=name,
                    configuration={"hnsw": {"space": space}},
                )
            else:
                try:
                    collection = await asyncio.to_thread(client.get_collection, name=name)
                except _not_found():
                    return None
            self._collections[name] = collection
        return collection

    def _forget(self, name: str) -> None:
        """Drop this process's handles on a collection (gone, or about to be)."""
        self._stores.pop(name, None)
        self._collections.pop(name, None)

    async def _call(self, name: str, call: Callable[[], T]) -> T | None:
        """``call`` in a worker thread; None when the collection was dropped meanwhile.

        A handle cached here outlives a collection another process dropped (a Chroma
        server shared by several instances): Chroma then answers "not found".
        """
        try:
            return await asyncio.to_thread(call)
        except _not_found():
            self._forget(name)
            return None

    async def add(
        self,
        name: str,
        space: Distance,
        *,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        """Upsert chunks with their precomputed vectors (creating the collection if needed)."""
        if not ids:
            return
        collection = await self._collection(name, space, create=True)
        await asyncio.to_thread(
            collection.upsert,
            ids=list(ids),
            embeddings=[list(v) for v in vectors],
            documents=list(texts),
            metadatas=[dict(m) for m in metadatas],
        )

    async def delete(self, name: str, space: Distance, ids: Sequence[str]) -> None:
        """Remove chunks (unknown ids, or a collection that does not exist, are ignored)."""
        if not ids:
            return
        collection = await self._collection(name, space)
        if collection is None:
            return
        for start in range(0, len(ids), 5000):
            batch = list(ids[start : start + 5000])
            await self._call(name, functools.partial(collection.delete, ids=batch))

    async def search(
        self,
        name: str,
        space: Distance,
        vector: Sequence[float],
        *,
        k: int,
        where: dict[str, Any] | None = None,
        mmr: bool = False,
    ) -> list[VectorHit]:
        """The ``k`` closest chunks, optionally diversified by maximal marginal relevance."""
        store = await self._store(name, space)
        if store is None:
            return []
        fetch_k = max(k * 4, 20) if mmr else k
        query = list(vector)
        scored = await self._call(
            name,
            lambda: store.similarity_search_by_vector_with_relevance_scores(
                query, k=fetch_k, filter=where
            ),
        )
        hits = [_hit(doc, similarity(distance, space)) for doc, distance in scored or []]
        if not mmr or not hits:
            return hits
        chosen = await self._call(
            name,
            lambda: store.max_marginal_relevance_search_by_vector(
                query, k=k, fetch_k=fetch_k, filter=where
            ),
        )
        if chosen is None:
            return []
        by_id = {hit.chunk_id: hit for hit in hits}
        return [by_id[doc.id] for doc in chosen if doc.id in by_id]

    async def nearest(
        self,
        name: str,
        space: Distance,
        vector: Sequence[float],
        *,
        k: int,
        where: dict[str, Any] | None = None,
    ) -> list[tuple[str, float]]:
        """Ids and similarities of the ``k`` closest chunks, closest first, without texts.

        For a caller that reads the chunks from the registry anyway: Chroma's reading of
        the texts and metadata of 60 hits costs ~6.5 ms of CPU at 100k chunks, its
        distances alone ~2 ms (bench/results/rag-100k-2026-12-05b.txt).
        """
        collection = await self._collection(name, space)
        if collection is None:
            return []
        query = [list(vector)]
        result = await self._call(
            name,
            lambda: collection.query(
                query_embeddings=query, n_results=k, where=where, include=["distances"]
            ),
        )
        if result is None:
            return []
        ids, distances = result["ids"][0], (result["distances"] or [[]])[0]
        return [(str(cid), similarity(d, space)) for cid, d in zip(ids, distances, strict=True)]

    async def ids_matching(self, name: str, space: Distance, where: dict[str, Any]) -> set[str]:
        """Ids of the chunks whose metadata matches ``where`` (for keyword search filters)."""
        collection = await self._collection(name, space)
        if collection is None:
            return set()
        result = await self._call(name, lambda: collection.get(where=where, include=[]))
        return set() if result is None else set(result["ids"])

    async def count(self, name: str, space: Distance) -> int:
        """Vectors in the collection (0 when it does not exist)."""
        collection = await self._collection(name, space)
        if collection is None:
            return 0
        return int(await self._call(name, collection.count) or 0)

    async def drop(self, name: str) -> None:
        """Delete a whole Chroma collection (after a re-embedding swap)."""
        self._forget(name)
        client = await self._clients.get()
        try:
            await asyncio.to_thread(client.delete_collection, name)
        except Exception as exc:  # already gone: nothing to drop
            if "does not exist" not in str(exc).lower() and "not found" not in str(exc).lower():
                raise


def _not_found() -> type[Exception]:
    """Chroma's "collection does not exist" (imported late: chromadb takes ~1.5 s)."""
    from chromadb.errors import NotFoundError

    return NotFoundError


def _hit(doc: Document, score: float) -> VectorHit:
    return VectorHit(
        chunk_id=str(doc.id), text=doc.page_content, metadata=dict(doc.metadata), score=score
    )
