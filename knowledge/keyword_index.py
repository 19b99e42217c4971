"""The BM25 keyword index, kept in SQL (``ahc_keyword_postings``) next to the chunk rows.

Why SQL: postings are written and deleted in the caller's transaction, with the chunk rows,
so the index is always exactly the committed chunks, shared by every service instance, and
never rebuilt per query; the same statements run on SQLite and PostgreSQL.

Layout: one posting per (collection, term, chunk) with the term's frequency ``tf`` and the
chunk's length (its token count, denormalized so scoring reads no other table). Every chunk
also has one posting under the reserved term :data:`LENGTH_TERM` (``tf`` = its length):
counting and summing that posting list gives the collection's N and average length in the
same statement (and snapshot) as the document frequencies, with no shared counter row for
concurrent ingests to fight over.

Scoring is Okapi BM25 (k1 = 1.2, b = 0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5))), one
point per distinct query term. idf is computed in Python (SQLite may lack ``ln``); the sum
over postings, ``GROUP BY chunk_id ORDER BY score LIMIT`` runs in SQL on the primary key
(collection_id, term, chunk_id). Very common terms are handled exactly by max-score pruning
(see :func:`search`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Select, bindparam, case, cast, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.base import Base
from db.models import KeywordPosting
from knowledge.keywords import terms

K1 = 1.2
B = 0.75

LENGTH_TERM = "#length"
"""The reserved term of every chunk's length posting; ``terms()`` never yields ``#``."""

_INSERT_BATCH = 5000
"""Postings per executemany: bounded memory, few round trips."""

_IDS_BATCH = 500
"""Ids per ``IN (...)`` list: under every backend's bound-parameter limit, still one plan."""

_posting = Base.metadata.tables[KeywordPosting.__tablename__]
_COLUMNS = ("collection_id", "term", "chunk_id", "tf", "chunk_length")


async def index_chunks(
    session: AsyncSession, collection_id: str, chunks: Sequence[tuple[str, str]]
) -> dict[str, int]:
    """Write the postings of ``(chunk id, text)`` pairs; each chunk's token count.

    The caller stores the count in ``KnowledgeChunk.token_count`` and commits postings and
    chunk rows together. A chunk id must not be indexed twice (remove it first).
    """
    counts: dict[str, int] = {}
    rows: list[tuple[str, str, str, int, int]] = []
    for chunk_id, text in chunks:
        bag = terms(text)
        length = bag.total()
        counts[chunk_id] = length
        rows.append((collection_id, LENGTH_TERM, chunk_id, length, length))
        rows.extend((collection_id, term, chunk_id, tf, length) for term, tf in bag.items())
    if rows:
        await _insert(session, rows)
    return counts


async def _insert(session: AsyncSession, rows: list[tuple[str, str, str, int, int]]) -> None:
    """Bulk-insert postings in the session's transaction.

    A chunk has ~100-500 distinct terms, so this is the cost of ingest. PostgreSQL gets
    ``COPY`` on the session's own psycopg connection (2-3x faster than executemany);
    other backends an executemany of the same rows.
    """
    connection = await session.connection()
    if connection.dialect.driver == "psycopg":
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        statement = f"COPY {_posting.name} ({', '.join(_COLUMNS)}) FROM STDIN"
        async with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                await copy.write_row(row)
        return
    for start in range(0, len(rows), _INSERT_BATCH):
        await connection.execute(
            insert(_posting),
            [dict(zip(_COLUMNS, row, strict=True)) for row in rows[start : start + _INSERT_BATCH]],
        )


async def remove_chunks(session: AsyncSession, chunk_ids: Sequence[str]) -> None:
    """Delete every posting of these chunks (in the caller's transaction, with the chunks)."""
    ids = list(dict.fromkeys(chunk_ids))
    for start in range(0, len(ids), _IDS_BATCH):
        await session.execute(
            delete(_posting).where(_posting.c.chunk_id.in_(ids[start : start + _IDS_BATCH]))
        )


async def remove_collection(session: AsyncSession, collection_id: str) -> None:
    """Delete a collection's whole index (its chunk rows go by cascade; postings have no FK)."""
    await session.execute(delete(_posting).where(_posting.c.collection_id == collection_id))


@dataclass(frozen=True)
class _Stats:
    """What BM25 needs to know about the collection for one query."""

    chunks: int
    average_length: float
    df: dict[str, int]


async def _stats(session: AsyncSession, collection_id: str, wanted: Sequence[str]) -> _Stats:
    """N, average length and each term's df, read in one statement (one snapshot)."""
    result = await session.execute(
        select(_posting.c.term, func.count(), func.sum(_posting.c.chunk_length))
        .where(
            _posting.c.collection_id == collection_id,
            _posting.c.term.in_([LENGTH_TERM, *wanted]),
        )
        .group_by(_posting.c.term)
    )
    chunks, total, df = 0, 0, {}
    for term, count, length_sum in result:
        if term == LENGTH_TERM:
            chunks, total = int(count), int(length_sum or 0)
        else:
            df[term] = int(count)
    return _Stats(chunks=chunks, average_length=total / chunks if chunks else 0.0, df=df)


def idf(chunks: int, df: int) -> float:
    """BM25's idf: ln(1 + (N - df + 0.5) / (df + 0.5)), never negative."""
    return math.log(1.0 + (chunks - df + 0.5) / (df + 0.5))


def _score_query(
    collection_id: str,
    weights: dict[str, float],
    average_length: float,
    *,
    limit: int | None,
    within: Sequence[str] | None = None,
) -> Select[str, float]:
    """``SELECT chunk_id, SUM(bm25) ... GROUP BY chunk_id ORDER BY score DESC LIMIT``.

    ``weights`` maps each term to idf * (k1 + 1); the denominator is
    tf + k1 * (1 - b) + (k1 * b / avgdl) * dl, so the SQL is plain arithmetic.
    """
    tf = cast(_posting.c.tf, Float)
    weight = case(
        {term: bindparam(None, w, type_=Float) for term, w in weights.items()},
        value=_posting.c.term,
        else_=bindparam(None, 0.0, type_=Float),
    )
    slope = K1 * B / average_length if average_length > 0 else 0.0
    denominator = (
        tf
        + bindparam(None, K1 * (1 - B), type_=Float)
        + bindparam(None, slope, type_=Float) * cast(_posting.c.chunk_length, Float)
    )
    score = func.sum(weight * tf / denominator).label("score")
    query = select(_posting.c.chunk_id, score).where(
        _posting.c.collection_id == collection_id, _posting.c.term.in_(list(weights))
    )
    if within is not None:
        query = query.where(_posting.c.chunk_id.in_(list(within)))
    query = query.group_by(_posting.c.chunk_id).order_by(score.desc(), _posting.c.chunk_id)
    if limit is not None:
        query = query.limit(limit)
    return query


async def search(
    session: AsyncSession,
    collection_id: str,
    query: str,
    *,
    limit: int,
    allowed: Collection[str] | None = None,
) -> list[tuple[str, float]]:
    """The ``limit`` best chunks for ``query`` by BM25, as (chunk id, score), best first.

    ``allowed`` (the chunk ids that pass the metadata filters) restricts the results, not
    the statistics: N, avgdl and df are always the whole collection's, so a filter never
    changes a chunk's score. Ties are broken by chunk id, so results are deterministic.
    """
    wanted = sorted(terms(query))
    if not wanted or limit <= 0 or (allowed is not None and not allowed):
        return []
    stats = await _stats(session, collection_id, wanted)
    weights = {term: idf(stats.chunks, df) * (K1 + 1) for term, df in stats.df.items() if df > 0}
    if not weights:
        return []
    if allowed is not None:
        return await _search_within(session, collection_id, weights, stats, limit, allowed)
    result = await session.execute(
        _score_query(collection_id, weights, stats.average_length, limit=limit)
    )
    return [(chunk_id, float(score)) for chunk_id, score in result]


async def _search_within(
    session: AsyncSession,
    collection_id: str,
    weights: dict[str, float],
    stats: _Stats,
    limit: int,
    allowed: Collection[str],
) -> list[tuple[str, float]]:
    """Top ``limit`` among ``allowed``: the cheaper of two exact plans.

    Few postings (sum of df ≤ allowed ids): score every match, filter in Python. Otherwise
    the top ``limit`` of each batch of allowed ids (primary-key lookups), merged.
    """
    postings = sum(stats.df[term] for term in weights)
    if postings <= len(allowed):
        allowed_set = allowed if isinstance(allowed, set | frozenset) else set(allowed)
        result = await session.execute(
            _score_query(collection_id, weights, stats.average_length, limit=None)
        )
        hits = [(c, float(s)) for c, s in result if c in allowed_set]
        return hits[:limit]
    ids = sorted(allowed)
    hits = []
    for start in range(0, len(ids), _IDS_BATCH):
        result = await session.execute(
            _score_query(
                collection_id,
                weights,
                stats.average_length,
                limit=limit,
                within=ids[start : start + _IDS_BATCH],
            )
        )
        hits.extend((c, float(s)) for c, s in result)
    hits.sort(key=lambda hit: (-hit[1], hit[0]))
    return hits[:limit]
