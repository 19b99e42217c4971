"""Re-embed a collection without downtime: fill a new Chroma collection, then swap.

Searches keep using the current vectors while the new collection fills. Documents
ingested meanwhile are written to both (``building_collection`` in the registry), and a
catch-up pass picks up anything the first pass missed. The swap is one registry update;
the old Chroma collection is dropped after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from langchain_core.embeddings import Embeddings
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounting.events import CallContext
from db.models import KnowledgeChunk, KnowledgeCollection, KnowledgeDocument
from db.session import session_scope
from knowledge.metadata import chunk_metadata
from knowledge.vectors import Distance, VectorStore, space_of

logger = logging.getLogger(__name__)

EmbedderFor = Callable[[str, str, CallContext], Awaitable[Embeddings]]
_PAGE = 500


async def rebuild_collection(
    collection_id: str,
    *,
    sessions: async_sessionmaker[AsyncSession],
    vectors: VectorStore,
    embedder_for: EmbedderFor,
    user_id: str,
    request_id: str | None,
    batch_size: int,
) -> None:
    """Embed every chunk of the collection with its ``building_model`` and swap."""
    async with sessions() as session:
        collection = await session.get(KnowledgeCollection, collection_id)
    if collection is None or not collection.building_collection or not collection.building_model:
        return
    target, model = collection.building_collection, collection.building_model
    space = space_of(collection.distance)
    context = CallContext(
        org_id=collection.org_id, user_id=user_id, route="knowledge.reembed", request_id=request_id
    )
    try:
        embedder = await embedder_for(collection.org_id, model, context)
        done: set[str] = set()
        dimension = 0
        for _ in range(2):  # the full pass, then a catch-up pass for late arrivals
            dimension = max(
                dimension,
                await _copy_pass(
                    collection, target, space, embedder, vectors, sessions, done, batch_size
                ),
            )
        async with session_scope(sessions) as session:
            row = await session.get(KnowledgeCollection, collection_id, with_for_update=True)
            if row is None:
                return
            old = row.vector_collection
            row.vector_collection = target
            row.embedding_model = model
            if dimension:
                row.embedding_dim = dimension
            row.building_collection = row.building_model = None
        await vectors.drop(old)
    except BaseException:
        await asyncio.shield(_abandon(collection_id, target, sessions, vectors))
        raise


async def _copy_pass(
    collection: KnowledgeCollection,
    target: str,
    space: Distance,
    embedder: Embeddings,
    vectors: VectorStore,
    sessions: async_sessionmaker[AsyncSession],
    done: set[str],
    batch_size: int,
) -> int:
    """Embed the ready chunks not yet in ``done`` into ``target``; the vector dimension."""
    after = ""
    dimension = 0
    while True:
        async with sessions() as session:
            rows = (
                await session.execute(
                    select(KnowledgeChunk, KnowledgeDocument)
                    .join(KnowledgeDocument, KnowledgeDocument.id == KnowledgeChunk.document_id)
                    .where(
                        KnowledgeChunk.collection_id == collection.id,
                        KnowledgeChunk.id > after,
                        KnowledgeDocument.status == "ready",
                    )
                    .order_by(KnowledgeChunk.id)
                    .limit(_PAGE)
                )
            ).all()
        if not rows:
            return dimension
        after = rows[-1][0].id
        todo = [(chunk, document) for chunk, document in rows if chunk.id not in done]
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            embedded = await embedder.aembed_documents([chunk.text for chunk, _ in batch])
            dimension = len(embedded[0]) if embedded else dimension
            await vectors.add(
                target,
                space,
                ids=[chunk.id for chunk, _ in batch],
                texts=[chunk.text for chunk, _ in batch],
                vectors=embedded,
                metadatas=[
                    chunk_metadata(
                        document,
                        collection,
                        chunk_id=chunk.id,
                        index=chunk.chunk_index,
                        page=chunk.page,
                        section=chunk.section,
                    )
                    for chunk, document in batch
                ],
            )
            done.update(chunk.id for chunk, _ in batch)


async def abandon_rebuild(
    collection_id: str,
    *,
    sessions: async_sessionmaker[AsyncSession],
    vectors: VectorStore,
) -> None:
    """Give up a rebuild that cannot finish (its job was abandoned): keep the old vectors."""
    async with sessions() as session:
        collection = await session.get(KnowledgeCollection, collection_id)
    if collection is not None and collection.building_collection:
        await _abandon(collection_id, collection.building_collection, sessions, vectors)


async def _abandon(
    collection_id: str,
    target: str,
    sessions: async_sessionmaker[AsyncSession],
    vectors: VectorStore,
) -> None:
    """A failed rebuild leaves the collection as it was."""
    logger.warning("re-embedding of collection %s failed; keeping its vectors", collection_id)
    async with session_scope(sessions) as session:
        row = await session.get(KnowledgeCollection, collection_id, with_for_update=True)
        if row is not None and row.building_collection == target:
            row.building_collection = row.building_model = None
    await vectors.drop(target)
