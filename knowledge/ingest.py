"""Ingest one document: parse → split → embed in batches → vectors → registry, atomically.

Agnostic to how the bytes arrived (upload, re-index) and to who runs it (the job queue).
Vectors are written first under fresh chunk ids; the registry transaction then swaps the
document's old chunks (and their keyword postings) for the new ones and marks it ready.
Any failure or cancellation deletes the vectors this run wrote, so neither Chroma nor the
registry keeps a half document.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from langchain_core.embeddings import Embeddings
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import KnowledgeChunk, KnowledgeCollection, KnowledgeDocument
from db.session import session_scope
from knowledge import keyword_index, registry
from knowledge.metadata import chunk_metadata
from knowledge.vectors import Distance, VectorStore, space_of
from loaders import Chunk, EmptyDocument, parse, split


class DocumentGone(Exception):
    """The document was deleted or cancelled while it was being ingested."""


@dataclass(frozen=True)
class VectorTarget:
    """A Chroma collection to write into, with the embedder that fills it."""

    name: str
    embedder: Embeddings


async def ingest_document(
    document: KnowledgeDocument,
    collection: KnowledgeCollection,
    data: bytes,
    *,
    sessions: async_sessionmaker[AsyncSession],
    vectors: VectorStore,
    targets: Sequence[VectorTarget],
    batch_size: int,
    headings: bool = True,
) -> int:
    """Index ``data`` as ``document``; returns its number of chunks.

    ``headings``: every chunk's text starts with the document's title and section path.
    """
    stop = threading.Event()  # a cancelled ingestion stops its parsing thread too
    try:
        parsed = await asyncio.to_thread(
            parse, data, document.filename, document.content_type, stop=stop.is_set
        )
    except asyncio.CancelledError:
        stop.set()
        raise
    chunks = await asyncio.to_thread(
        partial(
            split,
            parsed,
            chunk_size=collection.chunk_size,
            chunk_overlap=collection.chunk_overlap,
            headings=headings,
        )
    )
    if not chunks:
        raise EmptyDocument(document.filename, "no text to index")
    run = uuid.uuid4().hex[:8]
    ids = [f"{document.id}:{run}:{chunk.index}" for chunk in chunks]
    space = space_of(collection.distance)
    written: list[tuple[str, list[str]]] = []
    try:
        for target in targets:
            written.append((target.name, ids))  # before writing: a failure mid-way undoes it
            await _write_vectors(document, collection, chunks, ids, target, vectors, batch_size)
        old = await _commit_chunks(document, collection, chunks, ids, sessions)
    except BaseException:
        await asyncio.shield(_delete_all(vectors, space, written))
        raise
    for target in targets:  # the replaced chunks of a re-index, after the swap committed
        await vectors.delete(target.name, space, old)
    return len(chunks)


async def _write_vectors(
    document: KnowledgeDocument,
    collection: KnowledgeCollection,
    chunks: Sequence[Chunk],
    ids: Sequence[str],
    target: VectorTarget,
    vectors: VectorStore,
    batch_size: int,
) -> None:
    space = space_of(collection.distance)
    for start in range(0, len(chunks), batch_size):
        batch = chunks[start : start + batch_size]
        batch_ids = ids[start : start + batch_size]
        texts = [chunk.text for chunk in batch]
        embedded = await target.embedder.aembed_documents(texts)
        metadatas = [
            chunk_metadata(
                document,
                collection,
                chunk_id=chunk_id,
                index=chunk.index,
                page=chunk.page,
                section=chunk.section,
            )
            for chunk, chunk_id in zip(batch, batch_ids, strict=True)
        ]
        await vectors.add(
            target.name, space, ids=batch_ids, texts=texts, vectors=embedded, metadatas=metadatas
        )


async def _commit_chunks(
    document: KnowledgeDocument,
    collection: KnowledgeCollection,
    chunks: Sequence[Chunk],
    ids: Sequence[str],
    sessions: async_sessionmaker[AsyncSession],
) -> list[str]:
    """Swap the document's chunks in one transaction; the replaced chunk ids."""
    async with session_scope(sessions) as session:
        current = await session.get(KnowledgeDocument, document.id, with_for_update=True)
        if current is None or current.status != "processing":
            raise DocumentGone(document.id)
        old = await registry.chunk_ids(session, document.id)
        await keyword_index.remove_chunks(session, old)
        await registry.delete_chunks(session, old)
        counts = await keyword_index.index_chunks(
            session, collection.id, [(i, c.text) for i, c in zip(ids, chunks, strict=True)]
        )
        session.add_all(
            KnowledgeChunk(
                id=chunk_id,
                document_id=document.id,
                collection_id=collection.id,
                chunk_index=chunk.index,
                text=chunk.text,
                page=chunk.page,
                section=chunk.section,
                token_count=counts.get(chunk_id, 0),
            )
            for chunk, chunk_id in zip(chunks, ids, strict=True)
        )
        await registry.set_status(session, document.id, "ready", chunks=len(chunks))
    return old


async def _delete_all(
    vectors: VectorStore, space: Distance, written: Sequence[tuple[str, list[str]]]
) -> None:
    for name, ids in written:
        await vectors.delete(name, space, ids)
