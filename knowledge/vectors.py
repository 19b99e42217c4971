"""The vector half of the knowledge base: LangChain ``Chroma`` stores over one Chroma client.

Each org collection has its own Chroma collection (named in the SQL registry), so no query
can reach another org's chunks. Embeddings are computed by the caller (batched and
accounted), so the stores here are built without an embedding function and cached per
Chroma collection. Chroma's client is synchronous: every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from langchain_core.documents import Document

from core.vectorstore import ChromaClientProvider

if TYPE_CHECKING:
    from langchain_chroma import Chroma

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
    """Adds, deletes and queries chunk vectors in per-collection Chroma collections."""

    def __init__(self, clients: ChromaClientProvider) -> None:
        self._clients = clients
        self._stores: dict[str, Chroma] = {}
        self._collections: dict[str, Any] = {}

    async def _store(self, name: str, space: Distance) -> Chroma:
        store = self._stores.get(name)
        if store is None:
            from langchain_chroma import Chroma  # imports chromadb (~1.5 s): on first use

            client = await self._clients.get()
            store = await asyncio.to_thread(
                Chroma,
                collection_name=name,
                client=client,
                collection_configuration={"hnsw": {"space": space}},
            )
            self._stores[name] = store
        return store

    async def _collection(self, name: str, space: Distance) -> Any:
        """The raw ``chromadb`` collection, for writes with precomputed vectors."""
        collection = self._collections.get(name)
        if collection is None:
            client = await self._clients.get()
            collection = await asyncio.to_thread(
                client.get_or_create_collection,
                name=name,
                configuration={"hnsw": {"space": space}},
            )
            self._collections[name] = collection
        return collection

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
        """Upsert chunks with their precomputed vectors."""
        if not ids:
            return
        collection = await self._collection(name, space)
        await asyncio.to_thread(
            collection.upsert,
            ids=list(ids),
            embeddings=[list(v) for v in vectors],
            documents=list(texts),
            metadatas=[dict(m) for m in metadatas],
        )

    async def delete(self, name: str, space: Distance, ids: Sequence[str]) -> None:
        """Remove chunks (unknown ids are ignored)."""
        if not ids:
            return
        store = await self._store(name, space)
        for start in range(0, len(ids), 5000):
            await asyncio.to_thread(store.delete, ids=list(ids[start : start + 5000]))

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
        fetch_k = max(k * 4, 20) if mmr else k
        scored = await asyncio.to_thread(
            store.similarity_search_by_vector_with_relevance_scores,
            list(vector),
            k=fetch_k,
            filter=where,
        )
        hits = [_hit(doc, similarity(distance, space)) for doc, distance in scored]
        if not mmr:
            return hits
        chosen = await asyncio.to_thread(
            store.max_marginal_relevance_search_by_vector,
            list(vector),
            k=k,
            fetch_k=fetch_k,
            filter=where,
        )
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
        result = await asyncio.to_thread(
            collection.query,
            query_embeddings=[list(vector)],
            n_results=k,
            where=where,
            include=["distances"],
        )
        ids, distances = result["ids"][0], (result["distances"] or [[]])[0]
        return [(str(cid), similarity(d, space)) for cid, d in zip(ids, distances, strict=True)]

    async def ids_matching(self, name: str, space: Distance, where: dict[str, Any]) -> set[str]:
        """Ids of the chunks whose metadata matches ``where`` (for keyword search filters)."""
        collection = await self._collection(name, space)
        result = await asyncio.to_thread(collection.get, where=where, include=[])
        return set(result["ids"])

    async def count(self, name: str, space: Distance) -> int:
        """Vectors in the collection."""
        collection = await self._collection(name, space)
        return int(await asyncio.to_thread(collection.count))

    async def drop(self, name: str) -> None:
        """Delete a whole Chroma collection (after a re-embedding swap)."""
        self._stores.pop(name, None)
        self._collections.pop(name, None)
        client = await self._clients.get()
        try:
            await asyncio.to_thread(client.delete_collection, name)
        except Exception as exc:  # already gone: nothing to drop
            if "does not exist" not in str(exc).lower() and "not found" not in str(exc).lower():
                raise


def _hit(doc: Document, score: float) -> VectorHit:
    return VectorHit(
        chunk_id=str(doc.id), text=doc.page_content, metadata=dict(doc.metadata), score=score
    )
