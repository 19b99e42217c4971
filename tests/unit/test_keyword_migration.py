"""Revision 0011 carries an existing keyword index over (and back), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from core.config import Settings
from db.migrate import downgrade, sync_url, upgrade
from db.session import create_engine, create_sessionmaker
from knowledge import keyword_index
from knowledge.keywords import terms
from tests.conftest import PG_ADMIN_URL

TEXTS = {
    "a": "The VPN접속 guide: VPN setup, VPN again",
    "b": "연차 휴가 신청은 인사 시스템에서",
    "c": "",  # a chunk without terms still counts (N, avgdl)
    "d": "printer guide guide",
}


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


def write_old_index(engine: sa.Engine, collection_id: str, ids: dict[str, str]) -> None:
    """The index as revision 0006 kept it: length postings, counters, the chunk index."""
    postings = []
    df: Counter[str] = Counter()
    for name, text in TEXTS.items():
        bag = terms(text)
        length = bag.total()
        postings.append((collection_id, "#length", ids[name], length, length))
        postings.extend((collection_id, t, ids[name], tf, length) for t, tf in bag.items())
        df.update(bag.keys())
        df["#chunks"] += 1
        df["#tokens"] += length
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ahc_keyword_postings (collection_id, term, chunk_id, tf, chunk_length)"
                " VALUES (:c, :t, :i, :tf, :n)"
            ),
            [{"c": c, "t": t, "i": i, "tf": tf, "n": n} for c, t, i, tf, n in postings],
        )
        conn.execute(
            sa.text("INSERT INTO ahc_keyword_terms (collection_id, term, df) VALUES (:c, :t, :d)"),
            [{"c": collection_id, "t": t, "d": d} for t, d in df.items()],
        )


async def search_all(settings: Settings, collection_id: str, query: str) -> list:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            return await keyword_index.search(session, collection_id, query, limit=10)
    finally:
        await engine.dispose()


async def test_upgrade_keeps_the_index_and_downgrade_restores_it(settings: Settings) -> None:
    keyword_index.CACHE.clear()
    upgrade(settings, "0008")
    old, fresh = str(uuid.uuid4()), str(uuid.uuid4())
    ids = {name: f"doc-{old[:8]}:{name}" for name in TEXTS}
    engine = sa.create_engine(sync_url(settings.resolved_database_url))
    try:
        write_old_index(engine, old, ids)
        upgrade(settings, "0011")
        with engine.connect() as conn:
            forward = {
                chunk_id: (collection_id, length, keyword_index.decode_terms(encoded))
                for chunk_id, collection_id, length, encoded in conn.execute(
                    sa.text("SELECT chunk_id, collection_id, length, terms FROM ahc_keyword_chunks")
                )
            }
            lengths = conn.execute(
                sa.text("SELECT count(*) FROM ahc_keyword_postings WHERE term = '#length'")
            ).scalar_one()
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("ahc_keyword_postings")}
        assert forward == {
            ids[name]: (old, terms(text).total(), dict(terms(text))) for name, text in TEXTS.items()
        }
        assert lengths == 0
        assert "ix_ahc_keyword_postings_chunk" not in indexes

        # The same chunks indexed by today's code score exactly as the migrated ones.
        async_engine = create_engine(settings)
        async with create_sessionmaker(async_engine)() as session:
            await keyword_index.index_chunks(
                session, fresh, [(f"{name}-fresh", text) for name, text in TEXTS.items()]
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

        # A migrated chunk is removed exactly (postings and counters).
        async_engine = create_engine(settings)
        async with create_sessionmaker(async_engine)() as session:
            await keyword_index.remove_chunks(session, [ids["a"]])
            await session.commit()
        await async_engine.dispose()
        assert [i for i, _ in await search_all(settings, old, "vpn guide")] == [ids["d"]]
        with engine.connect() as conn:
            left = conn.execute(
                sa.text("SELECT count(*) FROM ahc_keyword_postings WHERE chunk_id = :i"),
                {"i": ids["a"]},
            ).scalar_one()
            vpn = conn.execute(
                sa.text("SELECT count(*) FROM ahc_keyword_terms WHERE term = 'vpn'")
            ).scalar_one()
        assert left == 0
        assert vpn == 1  # the fresh collection's only

        downgrade(settings, "0008")
        with engine.connect() as conn:
            restored = conn.execute(
                sa.text(
                    "SELECT chunk_id, tf FROM ahc_keyword_postings"
                    " WHERE term = '#length' AND collection_id = :c"
                ),
                {"c": old},
            ).all()
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("ahc_keyword_postings")}
            tables = set(sa.inspect(conn).get_table_names())
        assert dict(restored) == {ids[n]: terms(TEXTS[n]).total() for n in ("b", "c", "d")}
        assert "ix_ahc_keyword_postings_chunk" in indexes
        assert "ahc_keyword_chunks" not in tables
    finally:
        engine.dispose()
        keyword_index.CACHE.clear()
