"""The BM25 keyword index, kept in SQL next to the chunk rows.

Why SQL: postings are written and deleted in the caller's transaction, with the chunk rows,
so the index is always exactly the committed chunks, shared by every service instance, and
never rebuilt per query; the same statements run on SQLite and PostgreSQL.

Layout. ``ahc_keyword_postings``: one row per (collection, term, chunk) with the term's
frequency ``tf`` and the chunk's length (its token count, denormalized so scoring reads no
other table); every chunk also has a posting under the reserved :data:`LENGTH_TERM`, so a
chunk without terms still counts and its removal knows what to subtract.
``ahc_keyword_terms``: each term's df in the collection, plus the collection's chunk count
and token total under reserved terms. Counting postings instead would cost O(N) per query
(measured: 15-30 ms at 100k chunks before any scoring); the counters cost a few primary-key
lookups. Writers change them by increments (``INSERT ... ON CONFLICT DO UPDATE SET df = df +
excluded.df``) in their own transaction, so concurrent ingests and deletes add up exactly;
removal subtracts what ``DELETE ... RETURNING`` says it actually deleted, so deleting the
same chunk twice (or concurrently) subtracts once. Every writer updates ``#chunks`` first,
so on PostgreSQL concurrent writers of one collection queue on that row (no deadlocks
between them) while searches never wait.

Scoring is Okapi BM25 (k1 = 1.2, b = 0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5))), one
point per distinct query term. idf is computed in Python (SQLite may lack ``ln``); the sum
over postings, ``GROUP BY chunk_id ORDER BY score LIMIT``, runs in SQL on the primary key
(collection_id, term, chunk_id). Very common terms are handled exactly by max-score pruning
(see :func:`_top`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
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
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from db.base import Base
from db.models import KeywordPosting, KeywordTerm
from knowledge.keywords import terms

K1 = 1.2
B = 0.75

LENGTH_TERM = "#length"
"""The reserved term of every chunk's length posting; ``terms()`` never yields ``#``."""

CHUNKS_TERM = "#chunks"
"""Reserved row of ``ahc_keyword_terms``: the collection's indexed chunks (BM25's N)."""

TOKENS_TERM = "#tokens"
"""Reserved row of ``ahc_keyword_terms``: the sum of their lengths (N * avgdl)."""

_INSERT_BATCH = 5000
"""Rows per executemany: bounded memory, few round trips."""

_IDS_BATCH = 500
"""Ids per ``IN (...)`` list: under every backend's bound-parameter limit, still one plan."""

_PRUNE_ABOVE = 5000
"""Postings a query may simply scan; above this, common terms are pruned (see ``_top``)."""

_LOOKUP_COST = 10
"""An index lookup costs about this many postings of a scan (measured, SQLite and PG)."""

_PRUNED_ATTEMPTS = 2
"""Pruned plans tried (cheapest first) before the plain scan: a failed one is wasted work."""

_posting = Base.metadata.tables[KeywordPosting.__tablename__]
_term = Base.metadata.tables[KeywordTerm.__tablename__]
_COLUMNS = ("collection_id", "term", "chunk_id", "tf", "chunk_length")


async def index_chunks(
    session: AsyncSession, collection_id: str, chunks: Sequence[tuple[str, str]]
) -> dict[str, int]:
    """Write the postings of ``(chunk id, text)`` pairs; each chunk's token count.

    The caller stores the count in ``KnowledgeChunk.token_count`` and commits postings and
    chunk rows together. A chunk id must not be indexed twice (remove it first).
    """
    counts: dict[str, int] = {}
    by_term: defaultdict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for chunk_id, text in chunks:
        bag = terms(text)
        length = bag.total()
        counts[chunk_id] = length
        by_term[LENGTH_TERM].append((chunk_id, length, length))
        for term, tf in bag.items():
            by_term[term].append((chunk_id, tf, length))
    if not counts:
        return counts
    df = Counter({term: len(postings) for term, postings in by_term.items()})
    del df[LENGTH_TERM]
    df[CHUNKS_TERM] = len(counts)
    df[TOKENS_TERM] = sum(counts.values())
    await _add_counts(session, collection_id, df)  # first: takes the collection's row lock
    rows = [  # in primary-key order (see _insert)
        (collection_id, term, chunk_id, tf, length)
        for term in sorted(by_term)
        for chunk_id, tf, length in by_term[term]
    ]
    await _insert(session, rows)
    return counts


async def _insert(session: AsyncSession, rows: list[tuple[str, str, str, int, int]]) -> None:
    """Bulk-insert postings in the session's transaction.

    A chunk has ~100-500 distinct terms, so this is the cost of ingest. Rows come in primary
    key order (measured on SQLite at 100k chunks: a third less CPU than chunk order, as each
    leaf page is visited once). PostgreSQL gets ``COPY`` on the session's own psycopg
    connection (2-3x faster than executemany); SQLite a driver-level executemany of tuples
    (SQLAlchemy's per-row parameter processing cost as much as SQLite itself).
    """
    connection = await session.connection()
    columns = ", ".join(_COLUMNS)
    if connection.dialect.driver == "psycopg":
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        async with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {_posting.name} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                await copy.write_row(row)
        return
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(connection.dialect.paramstyle)
    if marker is None:  # another driver: SQLAlchemy's portable executemany
        for start in range(0, len(rows), _INSERT_BATCH):
            batch = rows[start : start + _INSERT_BATCH]
            await connection.execute(
                insert(_posting), [dict(zip(_COLUMNS, row, strict=True)) for row in batch]
            )
        return
    statement = f"INSERT INTO {_posting.name} ({columns}) VALUES ({', '.join([marker] * 5)})"
    for start in range(0, len(rows), _INSERT_BATCH):
        await connection.exec_driver_sql(statement, rows[start : start + _INSERT_BATCH])


async def _add_counts(session: AsyncSession, collection_id: str, deltas: Counter[str]) -> None:
    """Add ``deltas`` to the collection's counters (upserts, reserved rows first).

    Sorted, so every writer locks rows in the same order, starting with ``#chunks``. The
    ``RETURNING`` makes SQLAlchemy batch the rows into multi-row statements.
    """
    connection = await session.connection()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_term)
    statement = statement.on_conflict_do_update(
        index_elements=[_term.c.collection_id, _term.c.term],
        set_={"df": _term.c.df + statement.excluded.df},
    ).returning(_term.c.term)
    reserved = [CHUNKS_TERM, TOKENS_TERM]
    order = [t for t in reserved if t in deltas] + sorted(t for t in deltas if t not in reserved)
    rows = [{"collection_id": collection_id, "term": t, "df": deltas[t]} for t in order]
    for start in range(0, len(rows), _INSERT_BATCH):
        await connection.execute(statement, rows[start : start + _INSERT_BATCH])


async def remove_chunks(session: AsyncSession, chunk_ids: Sequence[str]) -> None:
    """Delete every posting of these chunks (in the caller's transaction, with the chunks).

    Unknown or already removed ids are ignored; the counters lose exactly what was deleted.
    """
    ids = list(dict.fromkeys(chunk_ids))
    removed: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for start in range(0, len(ids), _IDS_BATCH):
        result = await session.execute(
            delete(_posting)
            .where(_posting.c.chunk_id.in_(ids[start : start + _IDS_BATCH]))
            .returning(_posting.c.collection_id, _posting.c.term, _posting.c.chunk_length)
        )
        for collection_id, term, length in result:
            deltas = removed[collection_id]
            if term == LENGTH_TERM:
                deltas[CHUNKS_TERM] -= 1
                deltas[TOKENS_TERM] -= length
            else:
                deltas[term] -= 1
    for collection_id, deltas in removed.items():
        await _add_counts(session, collection_id, deltas)
        touched = list(deltas)
        for start in range(0, len(touched), _IDS_BATCH):
            await session.execute(
                delete(_term).where(
                    _term.c.collection_id == collection_id,
                    _term.c.term.in_(touched[start : start + _IDS_BATCH]),
                    _term.c.df <= 0,
                )
            )


async def remove_collection(session: AsyncSession, collection_id: str) -> None:
    """Delete a collection's whole index (chunk rows go by cascade; the index has no FK)."""
    await session.execute(delete(_posting).where(_posting.c.collection_id == collection_id))
    await session.execute(delete(_term).where(_term.c.collection_id == collection_id))


async def rebuild_statistics(session: AsyncSession, collection_id: str) -> None:
    """Recompute the collection's counters from its postings (repair; O(postings)).

    Only needed if postings were ever written around this module; the counters are exact
    otherwise. Holds the collection's ``#chunks`` row, so writers wait for it.
    """
    await _add_counts(session, collection_id, Counter({CHUNKS_TERM: 0}))  # lock first
    await session.execute(delete(_term).where(_term.c.collection_id == collection_id))
    mine = _posting.c.collection_id == collection_id
    is_length = _posting.c.term == LENGTH_TERM
    columns = [_term.c.collection_id, _term.c.term, _term.c.df]
    await session.execute(
        insert(_term).from_select(
            columns,
            select(_posting.c.collection_id, _posting.c.term, func.count())
            .where(mine, _posting.c.term != LENGTH_TERM)
            .group_by(_posting.c.collection_id, _posting.c.term),
        )
    )
    for term, value in (
        (CHUNKS_TERM, func.count()),
        (TOKENS_TERM, func.coalesce(func.sum(_posting.c.chunk_length), 0)),
    ):
        await session.execute(
            insert(_term).from_select(
                columns,
                select(literal(collection_id), literal(term), value)
                .where(mine, is_length)
                .having(func.count() > 0),
            )
        )


@dataclass(frozen=True)
class _Stats:
    """What BM25 needs to know about the collection for one query."""

    chunks: int
    average_length: float
    df: dict[str, int]


async def _stats(session: AsyncSession, collection_id: str, wanted: Sequence[str]) -> _Stats:
    """N, total length and each term's df: primary-key lookups, in one statement."""
    result = await session.execute(
        select(_term.c.term, _term.c.df).where(
            _term.c.collection_id == collection_id,
            _term.c.term.in_([CHUNKS_TERM, TOKENS_TERM, *wanted]),
        )
    )
    counters = {term: int(df) for term, df in result}
    chunks = counters.pop(CHUNKS_TERM, 0)
    total = counters.pop(TOKENS_TERM, 0)
    return _Stats(chunks=chunks, average_length=total / chunks if chunks > 0 else 0.0, df=counters)


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
        """The best chunks among those that contain an ``essential`` term, fully scored.

        Only the essential terms' postings are scanned (the candidates and their partial
        scores, materialized once). The ``optional`` (common) terms add at most
        ``ceiling``, so a candidate whose partial score is below the ``limit``-th best
        partial minus ``ceiling`` cannot reach the top: only the others look their optional
        postings up in the (chunk_id, term, tf, chunk_length) index (a correlated subquery,
        so both planners do lookups, index-only).
        """
        found = _posting.alias("found")
        extra = _posting.alias("extra")
        candidates = (
            select(found.c.chunk_id, func.sum(self.contribution(found, essential)).label("partial"))
            .where(found.c.collection_id == collection_id, found.c.term.in_(list(essential)))
            .group_by(found.c.chunk_id)
            .cte("candidates")
            .prefix_with("MATERIALIZED")  # read twice; SQLite >= 3.35 and PostgreSQL >= 12
        )
        cutoff = (
            select(candidates.c.partial)
            .order_by(candidates.c.partial.desc())
            .limit(1)
            .offset(limit - 1)
            .scalar_subquery()
        )
        ceiling = sum(self.weights[term] for term in optional)
        rest = (
            select(func.sum(self.contribution(extra, optional)))
            .where(  # chunk ids are unique across collections: an index-only lookup
                extra.c.chunk_id == candidates.c.chunk_id, extra.c.term.in_(list(optional))
            )
            .scalar_subquery()
        )
        score = (candidates.c.partial + func.coalesce(rest, 0.0)).label("score")
        return (
            select(candidates.c.chunk_id, score)
            .where(
                candidates.c.partial
                >= func.coalesce(cutoff, 0.0) - bindparam(None, ceiling, type_=Float)
            )
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
    such chunk can enter the top and the answer is exact. The split is chosen by estimated
    cost; if the check fails, the plain scan of every posting answers.
    """
    order = sorted(bm25.weights, key=lambda term: (bm25.df[term], term))
    postings = sum(bm25.df[term] for term in order)
    plans: list[tuple[float, int]] = []
    for split in range(1, len(order)) if postings > _PRUNE_ABOVE else ():
        essential, optional = order[:split], order[split:]
        ceiling = sum(bm25.weights[term] for term in optional)
        weight = sum(bm25.weights[term] for term in essential)
        if weight <= ceiling:
            continue  # hopeless: candidates would rarely score above the ceiling
        # Cost in postings: the essential ones scanned, plus lookups for the candidates
        # within ``ceiling`` of the top (roughly: a typical hit scores half its weight).
        near = min(1.0, ceiling / (0.5 * weight))
        cost = sum(bm25.df[t] for t in essential) * (1 + near * len(optional) * _LOOKUP_COST)
        if 2 * cost < postings:  # clearly cheaper than the plain scan
            plans.append((cost, split))
    for _, split in sorted(plans)[:_PRUNED_ATTEMPTS]:
        essential, optional = order[:split], order[split:]
        hits = await _rows(session, bm25.pruned(collection_id, essential, optional, limit))
        if len(hits) == limit and hits[-1][1] > sum(bm25.weights[t] for t in optional):
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

    Few allowed ids (their lookups cheaper than scanning the postings): the top ``limit``
    of each batch of ids (index lookups), merged. Many: walk down the global ranking, a
    deeper prefix each round, until ``limit`` allowed chunks are in it (or it ends).
    """
    postings = sum(bm25.df[term] for term in bm25.weights)
    if len(allowed) * len(bm25.weights) * _LOOKUP_COST < postings:
        ids = sorted(set(allowed))  # a duplicate across two batches would be two hits
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
