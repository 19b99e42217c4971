"""The document registry in SQL: collections, documents, their files and chunks.

The registry is the source of truth: Chroma holds only vectors under the chunk ids listed
here. Functions take the caller's session (the caller owns the transaction) and always
filter by org, so a document id of another org is simply not found.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import KnowledgeChunk, KnowledgeCollection, KnowledgeDocument, KnowledgeFile

ACTIVE_STATUSES = ("processing", "ready")


def vector_collection_name(collection_id: str) -> str:
    """A fresh Chroma collection name for a collection (a new one per re-embedding)."""
    return f"ahc-{collection_id.replace('-', '')}-{uuid.uuid4().hex[:8]}"


async def get_collection(
    session: AsyncSession, org_id: str, name: str
) -> KnowledgeCollection | None:
    """The org's collection called ``name``."""
    result = await session.execute(
        select(KnowledgeCollection).where(
            KnowledgeCollection.org_id == org_id, KnowledgeCollection.name == name
        )
    )
    return result.scalar_one_or_none()


async def collection_by_id(session: AsyncSession, collection_id: str) -> KnowledgeCollection | None:
    """A collection by id (job handlers: the org was checked when the job was queued)."""
    return await session.get(KnowledgeCollection, collection_id)


async def list_collections(session: AsyncSession, org_id: str) -> list[KnowledgeCollection]:
    """The org's collections, by name."""
    result = await session.execute(
        select(KnowledgeCollection)
        .where(KnowledgeCollection.org_id == org_id)
        .order_by(KnowledgeCollection.name)
    )
    return list(result.scalars())


async def find_by_sha(
    session: AsyncSession, collection_id: str, sha256: str
) -> KnowledgeDocument | None:
    """A document of the collection with this content hash."""
    result = await session.execute(
        select(KnowledgeDocument).where(
            KnowledgeDocument.collection_id == collection_id, KnowledgeDocument.sha256 == sha256
        )
    )
    return result.scalar_one_or_none()


async def get_document(
    session: AsyncSession, org_id: str, document_id: str
) -> KnowledgeDocument | None:
    """The org's document ``document_id``."""
    result = await session.execute(
        select(KnowledgeDocument).where(
            KnowledgeDocument.org_id == org_id, KnowledgeDocument.id == document_id
        )
    )
    return result.scalar_one_or_none()


async def list_documents(
    session: AsyncSession,
    org_id: str,
    *,
    collection_id: str | None,
    status: str | None,
    metadata: dict[str, Any],
    limit: int,
    offset: int,
) -> tuple[list[KnowledgeDocument], int]:
    """A page of the org's documents (newest first) and the total count.

    Metadata filters are equality on top-level keys, applied in Python after the SQL page
    query would be wrong for counts, so with a metadata filter the matching rows are read
    whole; the registry of one org is small next to its chunks.
    """
    query = select(KnowledgeDocument).where(KnowledgeDocument.org_id == org_id)
    if collection_id is not None:
        query = query.where(KnowledgeDocument.collection_id == collection_id)
    if status is not None:
        query = query.where(KnowledgeDocument.status == status)
    query = query.order_by(KnowledgeDocument.created_at.desc(), KnowledgeDocument.id)
    if metadata:
        rows = [
            doc
            for doc in (await session.execute(query)).scalars()
            if all(doc.metadata_.get(key) == value for key, value in metadata.items())
        ]
        return rows[offset : offset + limit], len(rows)
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    page = await session.execute(query.limit(limit).offset(offset))
    return list(page.scalars()), int(total or 0)


async def read_file(session: AsyncSession, document_id: str) -> bytes | None:
    """The original bytes of a document."""
    row = await session.get(KnowledgeFile, document_id)
    return row.content if row is not None else None


async def chunk_ids(session: AsyncSession, document_id: str) -> list[str]:
    """Ids of a document's chunks, in order."""
    result = await session.execute(
        select(KnowledgeChunk.id)
        .where(KnowledgeChunk.document_id == document_id)
        .order_by(KnowledgeChunk.chunk_index)
    )
    return list(result.scalars())


async def delete_chunks(session: AsyncSession, ids: Sequence[str]) -> None:
    """Delete chunk rows (their postings are removed by the keyword index)."""
    for start in range(0, len(ids), 500):
        await session.execute(
            delete(KnowledgeChunk).where(KnowledgeChunk.id.in_(ids[start : start + 500]))
        )


async def set_status(
    session: AsyncSession,
    document_id: str,
    status: str,
    *,
    chunks: int | None = None,
    error: tuple[str, str] | None = None,
) -> None:
    """Move a document to ``status`` (with its chunk count, or the error that stopped it)."""
    values: dict[str, Any] = {"status": status}
    if chunks is not None:
        values["chunks"] = chunks
    values["error_code"], values["error_message"] = error if error else (None, None)
    await session.execute(
        update(KnowledgeDocument).where(KnowledgeDocument.id == document_id).values(**values)
    )


async def unfinished_documents(session: AsyncSession) -> list[KnowledgeDocument]:
    """Documents accepted but not finished (re-queued on start-up)."""
    result = await session.execute(
        select(KnowledgeDocument).where(KnowledgeDocument.status == "processing")
    )
    return list(result.scalars())
