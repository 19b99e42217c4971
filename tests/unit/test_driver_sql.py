"""The search path's driver SQL reads what SQLAlchemy would, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.driver_sql import DriverReads, _for_psycopg
from db.models import KnowledgeChunk, KnowledgeDocument
from knowledge.chunk_texts import ready_chunks
from tests.support.registry_rows import collection_row, document_row


async def documents(sessions: async_sessionmaker[AsyncSession]) -> dict[str, KnowledgeDocument]:
    """A collection with a ready document (user metadata, pages) and a processing one."""
    collection_id = str(uuid.uuid4())  # PostgreSQL's database is shared by tests
    made: dict[str, KnowledgeDocument] = {}
    async with sessions() as session:
        session.add(collection_row(collection_id))
        await session.flush()
        user_metadata = {"team": "hr", "year": 2026, "draft": False}
        for status, meta in (("ready", user_metadata), ("processing", {})):
            document = document_row(
                collection_id,
                str(uuid.uuid4()),
                status=status,
                filename=f"{status}.pdf",
                content_type="application/pdf",
                metadata=meta,
            )
            session.add(document)
            await session.flush()
            for index in range(3):
                session.add(
                    KnowledgeChunk(
                        id=f"{document.id}:{index}",
                        document_id=document.id,
                        collection_id=collection_id,
                        chunk_index=index,
                        text=f"{status} 본문 {index}",
                        page=index + 1 if index else None,
                        section="Intro" if index == 2 else None,
                        token_count=3,
                    )
                )
            made[status] = document
        await session.commit()
    return made


async def test_ready_chunks_match_the_orm_rows(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    made = await documents(sessions)
    ready, processing = made["ready"], made["processing"]
    wanted = [f"{ready.id}:2", f"{processing.id}:0", f"{ready.id}:0", "unknown"]
    async with sessions() as session:
        reads = await DriverReads.on(await session.connection())
        found = await ready_chunks(reads, wanted)
        orm = await session.get(KnowledgeDocument, ready.id)
    assert orm is not None
    assert sorted(found) == [f"{ready.id}:0", f"{ready.id}:2"]  # ready documents only
    chunk = found[f"{ready.id}:2"]
    where = (chunk.chunk_index, chunk.page, chunk.section)
    assert chunk.text == "ready 본문 2" and where == (2, 3, "Intro")
    assert found[f"{ready.id}:0"].page is None
    head = chunk.document
    assert head.id == ready.id and head.org_id == "org-a" and head.filename == "ready.pdf"
    assert head.created_at == orm.created_at and head.created_at.tzinfo is not None
    assert head.created_at.isoformat() == orm.created_at.isoformat()  # as Chroma's metadata
    assert head.metadata_ == {"team": "hr", "year": 2026, "draft": False}


async def test_any_of_reads_the_same_rows_on_both_backends(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    made = await documents(sessions)
    ids = [f"{made['ready'].id}:{i}" for i in range(3)]
    async with sessions() as session:
        reads = await DriverReads.on(await session.connection())
        among, params = reads.any_of("id", ids[:2])
        rows = await reads.rows(
            f"SELECT id, chunk_index FROM ahc_knowledge_chunks WHERE {among} ORDER BY id", params
        )
        assert await reads.rows("SELECT 1 WHERE 1 = ?", [2]) == []
    assert rows == [(ids[0], 0), (ids[1], 1)]


async def test_driver_errors_are_raised_as_sqlalchemys(
    sessions: async_sessionmaker[AsyncSession], database_url: str | None
) -> None:
    async with sessions() as session:
        reads = await DriverReads.on(await session.connection())
        with pytest.raises(DBAPIError) as raised:
            await reads.rows("SELECT x FROM ahc_no_such_table WHERE x = ?", [1])
    # What core.errors answers with 503 on SQLite (a locked database is an OperationalError).
    expected = ProgrammingError if database_url else OperationalError
    assert isinstance(raised.value, expected)


def test_driver_sql_refuses_percent_signs() -> None:
    assert _for_psycopg("SELECT a FROM t WHERE b = ? AND c = ANY(?)") == (
        "SELECT a FROM t WHERE b = %s AND c = ANY(%s)"
    )
    with pytest.raises(ValueError, match="%"):
        _for_psycopg("SELECT a FROM t WHERE b LIKE 'x%'")
