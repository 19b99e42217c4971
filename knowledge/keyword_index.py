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

from sqlalchemy import (
    ColumnElement,
    Float,
    FromClause,
    Select,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    select,
)
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

_PRUNE_ABOVE = 2000
"""Postings a query may simply scan; above this, common terms are pruned (see ``_top``)."""

_LOOKUP_COST = 4
"""A primary-key lookup costs about this many rows of a sequential posting scan."""

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


class _Bm25:
    """The BM25 sum as SQL over a postings table (or alias), for one query's statistics.

    ``weight`` of a term is idf * (k1 + 1); the denominator is
    tf + k1 * (1 - b) + (k1 * b / avgdl) * dl, so the SQL is plain arithmetic.
    """

    def __init__(self, stats: _Stats) -> None:
        self.weights = {
            term: idf(stats.chunks, df) * (K1 + 1) for term, df in stats.df.items() if df > 0
        }
        self.df = stats.df
        self.constant = K1 * (1 - B)
        self.slope = K1 * B / stats.average_length if stats.average_length > 0 else 0.0

    def contribution(self, table: FromClause, terms: Sequence[str]) -> ColumnElement[Any]:
        """One posting's share of the score, for postings of ``terms``."""
        tf = cast(table.c.tf, Float)
        weight = case(
            {term: bindparam(None, self.weights[term], type_=Float) for term in terms},
            value=table.c.term,
            else_=bindparam(None, 0.0, type_=Float),
        )
        denominator = (
            tf
            + bindparam(None, self.constant, type_=Float)
            + bindparam(None, self.slope, type_=Float) * cast(table.c.chunk_length, Float)
        )
        return weight * tf / denominator

    def full(
        self,
        collection_id: str,
        *,
        limit: int | None,
        within: Sequence[str] | None = None,
    ) -> Select[str, float]:
        """``SELECT chunk_id, SUM(bm25) ... GROUP BY chunk_id ORDER BY score DESC LIMIT``."""
        terms = list(self.weights)
        score = func.sum(self.contribution(_posting, terms)).label("score")
        query = select(_posting.c.chunk_id, score).where(
            _posting.c.collection_id == collection_id, _posting.c.term.in_(terms)
        )
        if within is not None:
            query = query.where(_posting.c.chunk_id.in_(list(within)))
        query = query.group_by(_posting.c.chunk_id).order_by(score.desc(), _posting.c.chunk_id)
        return query if limit is None else query.limit(limit)

    def pruned(
        self, collection_id: str, essential: Sequence[str], optional: Sequence[str], limit: int
    ) -> Select[str, float]:
        """Full scores of the chunks that contain an ``essential`` term, best first.

        The ``optional`` (common) terms are not scanned: each candidate looks its postings
        of them up by primary key (a correlated subquery, so both planners do lookups).
        """
        found = _posting.alias("found")
        extra = _posting.alias("extra")
        candidates = (
            select(found.c.chunk_id, func.sum(self.contribution(found, essential)).label("partial"))
            .where(found.c.collection_id == collection_id, found.c.term.in_(list(essential)))
            .group_by(found.c.chunk_id)
            .subquery("candidates")
        )
        rest = (
            select(func.sum(self.contribution(extra, optional)))
            .where(
                extra.c.collection_id == collection_id,
                extra.c.term.in_(list(optional)),
                extra.c.chunk_id == candidates.c.chunk_id,
            )
            .scalar_subquery()
        )
        score = (candidates.c.partial + func.coalesce(rest, 0.0)).label("score")
        return (
            select(candidates.c.chunk_id, score)
            .order_by(score.desc(), candidates.c.chunk_id)
            .limit(limit)
        )


async def _rows(session: AsyncSession, query: Select[str, float]) -> list[tuple[str, float]]:
    return [(chunk_id, float(score)) for chunk_id, score in await session.execute(query)]


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
    bm25 = _Bm25(await _stats(session, collection_id, wanted))
    if not bm25.weights:
        return []
    if allowed is not None:
        return await _search_within(session, collection_id, bm25, limit, allowed)
    return await _top(session, collection_id, bm25, limit)


async def _top(
    session: AsyncSession, collection_id: str, bm25: _Bm25, limit: int
) -> list[tuple[str, float]]:
    """The exact top ``limit``, skipping the scan of very common terms when that is safe.

    Max-score pruning: with the terms ordered rarest first, score only the chunks that hold
    one of the rare ("essential") terms, fully (common terms looked up per candidate). A
    chunk without any rare term scores at most the sum of the common terms' weights
    (idf * (k1 + 1), BM25's ceiling); if the ``limit``-th candidate scores above that, no
    such chunk can enter the top and the answer is exact. Otherwise one more term becomes
    essential, and in the end the plain scan of every posting answers.
    """
    order = sorted(bm25.weights, key=lambda term: (bm25.df[term], term))
    postings = sum(bm25.df[term] for term in order)
    if postings > _PRUNE_ABOVE:
        for split in range(1, len(order)):
            essential, optional = order[:split], order[split:]
            candidates = sum(bm25.df[term] for term in essential)
            if candidates * (1 + _LOOKUP_COST * len(optional)) >= postings:
                break  # the lookups would cost more than scanning everything
            hits = await _rows(session, bm25.pruned(collection_id, essential, optional, limit))
            ceiling = sum(bm25.weights[term] for term in optional)
            if len(hits) == limit and hits[-1][1] > ceiling:
                return hits
    return await _rows(session, bm25.full(collection_id, limit=limit))


async def _search_within(
    session: AsyncSession,
    collection_id: str,
    bm25: _Bm25,
    limit: int,
    allowed: Collection[str],
) -> list[tuple[str, float]]:
    """Top ``limit`` among ``allowed``: the cheaper of two exact plans.

    Few allowed ids (fewer lookups than postings): the top ``limit`` of each batch of ids
    (primary-key lookups), merged. Many: walk down the global ranking, a deeper prefix each
    round, until ``limit`` allowed chunks are in it (or the ranking ends).
    """
    postings = sum(bm25.df[term] for term in bm25.weights)
    if len(allowed) * len(bm25.weights) < postings:
        ids = sorted(allowed)
        hits: list[tuple[str, float]] = []
        for start in range(0, len(ids), _IDS_BATCH):
            batch = ids[start : start + _IDS_BATCH]
            hits.extend(await _rows(session, bm25.full(collection_id, limit=limit, within=batch)))
        hits.sort(key=lambda hit: (-hit[1], hit[0]))
        return hits[:limit]
    allowed_set = allowed if isinstance(allowed, set | frozenset) else set(allowed)
    depth = 4 * limit
    while True:
        ranked = await _top(session, collection_id, bm25, depth)
        hits = [hit for hit in ranked if hit[0] in allowed_set]
        if len(hits) >= limit or len(ranked) < depth:
            return hits[:limit]
        depth *= 8
