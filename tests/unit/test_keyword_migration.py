"""Revision 0013 carries a 0012 keyword index over (and back), on SQLite and PostgreSQL.

The 0012 layout: a row per posting (``ahc_keyword_postings``) and a forward row per chunk
with its term bag (``ahc_keyword_chunks``). 0013 numbers the chunks (one segment per
document, in chunk order) and packs each (term, segment)'s postings into one row.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.orm import Session

from core.config import Settings
from db.driver_sql import DriverReads
from db.migrate import downgrade, sync_url, upgrade
from db.models import KnowledgeChunk, KnowledgeCollection, KnowledgeDocument
from db.session import create_engine, create_sessionmaker
from knowledge import keyword_index
from knowledge.keywords import terms
from tests.conftest import PG_ADMIN_URL

DOCUMENTS = {  # document -> chunks in order (chunk c is empty: it still counts in N, avgdl)
    "d1": {"a": "The VPN접속 guide: VPN setup, VPN again", "b": "연차 휴가 신청은 인사 시스템에서"},
    "d2": {"c": "", "d": "printer guide guide", "e": "vpn printer 시스템"},
}
TEXTS = {name: text for chunks in DOCUMENTS.values() for name, text in chunks.items()}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """A database of this test's own: migrations go up and down in it."""
    if request.param == "sqlite":
        yield Settings(_env_file=None, data_dir=tmp_path)
        return
    name = f"ahc_test_kwmig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        yield Settings(_env_file=None, data_dir=tmp_path, database_url=url)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def encode(bag: Counter[str]) -> str:
    """A 0012 forward row's ``terms``."""
    return " ".join(term if tf == 1 else f"{term}:{tf}" for term, tf in sorted(bag.items()))


def write_0012_index(engine: sa.Engine, collection_id: str, ids: dict[str, str]) -> None:
    """Documents and their chunks, indexed as revision 0012 kept them."""
    with Session(engine) as session:
        session.add(
            KnowledgeCollection(
                id=collection_id,
                org_id="org-a",
                name="old",
                embedding_model="e5",
                embedding_dim=4,
                chunk_size=1000,
                chunk_overlap=100,
                vector_collection=f"v-{collection_id[:8]}",
            )
        )
        session.flush()
        for document, chunks in DOCUMENTS.items():
            session.add(
                KnowledgeDocument(
                    id=f"{collection_id[:8]}-{document}",
                    org_id="org-a",
                    collection_id=collection_id,
                    filename=f"{document}.txt",
                    content_type="text/plain",
                    size_bytes=1,
                    sha256=uuid.uuid4().hex,
                    status="ready",
                    created_by="alice",
                )
            )
            session.flush()
            # Inserted in reverse: the migration numbers chunks by chunk_index, not row order.
            for index, name in reversed(list(enumerate(chunks))):
                session.add(
                    KnowledgeChunk(
                        id=ids[name],
                        document_id=f"{collection_id[:8]}-{document}",
                        collection_id=collection_id,
                        chunk_index=index,
                        text=chunks[name],
                        token_count=terms(chunks[name]).total(),
                    )
                )
                session.flush()
        session.commit()
    postings, forward = [], []
    df: Counter[str] = Counter()
    for name, text in TEXTS.items():
        bag = terms(text)
        length = bag.total()
        forward.append({"i": ids[name], "c": collection_id, "l": length, "t": encode(bag)})
        postings.extend(
            {"c": collection_id, "t": t, "i": ids[name], "f": tf, "l": length}
            for t, tf in bag.items()
        )
        df.update(bag.keys())
        df["#chunks"] += 1
        df["#tokens"] += length
    df["#version"] = 7
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ahc_keyword_postings (collection_id, term, chunk_id, tf, chunk_length)"
                " VALUES (:c, :t, :i, :f, :l)"
            ),
            postings,
        )
        conn.execute(
            sa.text(
                "INSERT INTO ahc_keyword_chunks (chunk_id, collection_id, length, terms)"
                " VALUES (:i, :c, :l, :t)"
            ),
            forward,
        )
        conn.execute(
            sa.text("INSERT INTO ahc_keyword_terms (collection_id, term, df) VALUES (:c, :t, :d)"),
            [{"c": collection_id, "t": t, "d": d} for t, d in df.items()],
        )


async def search_all(settings: Settings, collection_id: str, query: str) -> list:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            reads = await DriverReads.on(await session.connection())
            return (await keyword_index.search(reads, collection_id, query, limit=10)).hits
    finally:
        await engine.dispose()


async def test_upgrade_packs_the_index_and_downgrade_restores_it(settings: Settings) -> None:
    keyword_index.CACHE.clear()
    upgrade(settings, "0012")
    old, fresh = str(uuid.uuid4()), str(uuid.uuid4())
    ids = {name: f"{old[:8]}:{name}" for name in TEXTS}
    engine = sa.create_engine(sync_url(settings.resolved_database_url))
    try:
        write_0012_index(engine, old, ids)
        upgrade(settings, "0013")
        with engine.connect() as conn:
            numbers = dict(
                conn.execute(
                    sa.text(
                        "SELECT chunk_id, number FROM ahc_keyword_numbers WHERE collection_id = :c"
                    ),
                    {"c": old},
                ).all()
            )
            segments = conn.execute(
                sa.text(
                    "SELECT segment, last FROM ahc_keyword_segments"
                    " WHERE collection_id = :c ORDER BY segment"
                ),
                {"c": old},
            ).all()
            counters = dict(
                conn.execute(
                    sa.text("SELECT term, df FROM ahc_keyword_terms WHERE collection_id = :c"),
                    {"c": old},
                ).all()
            )
            tables = set(sa.inspect(conn).get_table_names())
        # One segment per document, numbered in chunk order.
        assert numbers == {ids[n]: i for i, n in enumerate("abcde")}
        assert [tuple(s) for s in segments] == [(0, 1), (2, 4)]
        assert counters["#next"] == 5
        assert counters["#version"] == 8  # moved on: no process keeps postings from before
        assert {"ahc_keyword_postings", "ahc_keyword_chunks"}.isdisjoint(tables)

        # The same chunks indexed by today's code score exactly as the migrated ones.
        async_engine = create_engine(settings)
        async with create_sessionmaker(async_engine)() as session:
            for chunks in DOCUMENTS.values():
                await keyword_index.index_chunks(
                    session, fresh, [(f"{name}-fresh", text) for name, text in chunks.items()]
                )
            await session.commit()
        await async_engine.dispose()
        for query in ("vpn guide", "휴가 신청", "guide", "printer vpn 시스템"):
            migrated = await search_all(settings, old, query)
            expected = await search_all(settings, fresh, query)
            assert migrated, query
            assert [(i.rsplit(":", 1)[1], s) for i, s in migrated] == [
                (i.removesuffix("-fresh"), pytest.approx(s)) for i, s in expected
            ]

        # A migrated chunk is removed exactly (postings and counters; its segment stays).
        async_engine = create_engine(settings)
        async with create_sessionmaker(async_engine)() as session:
            await keyword_index.remove_chunks(session, [ids["a"]])
            await session.commit()
        await async_engine.dispose()
        assert [i for i, _ in await search_all(settings, old, "vpn guide")] == [
            ids["d"],
            ids["e"],
        ]
        with engine.connect() as conn:
            vpn = conn.execute(
                sa.text(
                    "SELECT df FROM ahc_keyword_terms WHERE term = 'vpn' AND collection_id = :c"
                ),
                {"c": old},
            ).scalar_one()
        assert vpn == 1  # e's only

        downgrade(settings, "0012")
        with engine.connect() as conn:
            forward = {
                chunk_id: (length, encoded)
                for chunk_id, length, encoded in conn.execute(
                    sa.text(
                        "SELECT chunk_id, length, terms FROM ahc_keyword_chunks"
                        " WHERE collection_id = :c"
                    ),
                    {"c": old},
                )
            }
            restored = Counter(
                dict(
                    conn.execute(
                        sa.text(
                            "SELECT chunk_id, count(*) FROM ahc_keyword_postings"
                            " WHERE collection_id = :c GROUP BY chunk_id"
                        ),
                        {"c": old},
                    ).all()
                )
            )
            tables = set(sa.inspect(conn).get_table_names())
        left = {n: t for n, t in TEXTS.items() if n != "a"}
        assert forward == {ids[n]: (terms(t).total(), encode(terms(t))) for n, t in left.items()}
        assert restored == Counter({ids[n]: len(terms(t)) for n, t in left.items() if terms(t)})
        assert "ahc_keyword_numbers" not in tables
        upgrade(settings)  # and up again
        assert [i for i, _ in await search_all(settings, old, "vpn guide")] == [
            ids["d"],
            ids["e"],
        ]
    finally:
        engine.dispose()
        keyword_index.CACHE.clear()
