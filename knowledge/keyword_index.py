"""The BM25 keyword index, kept in SQL next to the chunk rows, scored in memory.

Why SQL: postings are written and deleted in the caller's transaction, with the chunk rows,
so the index is always exactly the committed chunks, shared by every service instance, and
never half a document; the same statements run on SQLite and PostgreSQL.

Layout (revision 0013). Each chunk gets a **number** in its collection from the
``#next`` counter (never reused); a write of n chunks takes n consecutive numbers, a
**segment** named by its first number. ``ahc_keyword_postings``: one row per (collection,
term, segment) whose ``postings`` bytes pack the numbers, tfs and chunk lengths of the
term's postings in that segment (``knowledge.keyword_postings``, 8 bytes a posting).
``ahc_keyword_segments``: each segment's last number and its terms, so removal finds its
rows by primary key. ``ahc_keyword_chunks``: chunk id → number, segment, length.
``ahc_keyword_terms``: each term's df in the collection, plus the collection's chunk count,
token total, write count and next number under reserved terms. Writers change them by
increments (``INSERT ... ON CONFLICT DO UPDATE SET df = df + excluded.df``) in their own
transaction, so concurrent ingests and deletes add up exactly; removal subtracts what
``DELETE ... RETURNING`` says it actually deleted, so deleting the same chunk twice (or
concurrently) subtracts once. Every writer updates ``#chunks`` first, so on PostgreSQL
concurrent writers of one collection queue on that row (no deadlocks) while searches never
wait. Removing some chunks of a segment rewrites its rows under the segment row's lock.

Measured at 100k chunks (bench/results/keyword-2026-12-05b.txt): a row per posting cost
51 KB a chunk on PostgreSQL (tuple headers, index entries and the ids repeated ~180 times
a chunk) and 15 KB on SQLite; packed rows cost a few KB on both.

Search. Scoring is Okapi BM25 (k1 = 1.2, b = 0.75, idf = ln(1 + (N - df + 0.5) / (df +
0.5))), one point per distinct query term, summed with numpy over dense chunk numbers.
The postings of common terms are kept in this process (:class:`PostingCache`, a budget in
postings; :func:`warm` reads the most frequent terms in the background); rare terms are
read from SQL every time (a few rows). Every write bumps the collection's ``#version`` and
logs the numbers it added or removed (``ahc_keyword_log``); a search reads ``#version``
with the statistics, in one primary-key statement, and first brings the cache up to it
from the log (removed numbers masked, only the added segments' rows read): the cache never
serves anything but the committed index. Only the best numbers are mapped back to chunk
ids; ties are broken by number (the order chunks were indexed in), so results are
deterministic.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Integer, bindparam, delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.base import Base
from db.models import (
    KeywordChunk,
    KeywordLog,
    KeywordPosting,
    KeywordSegment,
    KeywordTerm,
    KnowledgeDocument,
)
from knowledge.keyword_postings import (
    CachedCollection,
    PostingCache,
    Postings,
    count,
    pack,
    unpack,
)
from knowledge.keywords import terms

logger = logging.getLogger(__name__)

K1 = 1.2
B = 0.75

CHUNKS_TERM = "#chunks"
"""Reserved row of ``ahc_keyword_terms``: the collection's indexed chunks (BM25's N)."""

NEXT_TERM = "#next"
"""Reserved row of ``ahc_keyword_terms``: chunk numbers handed out so far (never back)."""

TOKENS_TERM = "#tokens"
"""Reserved row of ``ahc_keyword_terms``: the sum of their lengths (N * avgdl)."""

VERSION_TERM = "#version"
"""Reserved row of ``ahc_keyword_terms``: bumped by every write (cached postings' validity)."""

RESERVED = (CHUNKS_TERM, NEXT_TERM, TOKENS_TERM, VERSION_TERM)
"""The reserved rows, in lock order; ``terms()`` never yields ``#``."""

MONOTONIC = (NEXT_TERM, VERSION_TERM)
"""Reserved counters that only grow (kept when a collection empties)."""

_INSERT_BATCH = 5000
"""Rows per executemany: bounded memory, few round trips."""

_IDS_BATCH = 500
"""Ids per ``IN (...)`` list: under every backend's bound-parameter limit, still one plan."""

CACHE_MIN_DF = 256
"""Terms in at least this many chunks are kept in memory; rarer ones are cheap to re-read."""

LOG_KEEP = 512
"""Writes per collection whose log entries are kept; a cache further behind starts over."""

_posting = Base.metadata.tables[KeywordPosting.__tablename__]
_segment = Base.metadata.tables[KeywordSegment.__tablename__]
_chunk = Base.metadata.tables[KeywordChunk.__tablename__]
_log = Base.metadata.tables[KeywordLog.__tablename__]
_term = Base.metadata.tables[KeywordTerm.__tablename__]
_COLUMNS = ("collection_id", "term", "segment", "postings")


# --- writes ----------------------------------------------------------------------------------


async def index_chunks(
    session: AsyncSession, collection_id: str, chunks: Sequence[tuple[str, str]]
) -> dict[str, int]:
    """Write the postings of ``(chunk id, text)`` pairs as one segment; each chunk's length.

    The caller stores the count in ``KnowledgeChunk.token_count`` and commits postings and
    chunk rows together. A chunk id must not be indexed twice (remove it first).
    """
    if not chunks:
        return {}
    counts: dict[str, int] = {}
    bags = []
    for chunk_id, text in chunks:
        bag = terms(text)
        counts[chunk_id] = bag.total()
        bags.append(bag)
    df: Counter[str] = Counter()
    for bag in bags:
        df.update(bag.keys())
    n = len(chunks)
    df[CHUNKS_TERM] = n
    df[NEXT_TERM] = n
    df[TOKENS_TERM] = sum(counts.values())
    df[VERSION_TERM] = 1
    values = await _add_counts(session, collection_id, df)  # first: the collection's lock
    first = values[NEXT_TERM] - n
    last = first + n - 1
    version = values[VERSION_TERM]
    by_term: defaultdict[str, tuple[list[int], list[int], list[int]]] = defaultdict(
        lambda: ([], [], [])
    )
    for number, ((chunk_id, _), bag) in enumerate(zip(chunks, bags, strict=True), start=first):
        length = counts[chunk_id]
        for term, tf in bag.items():
            numbers, tfs, lengths = by_term[term]
            numbers.append(number)
            tfs.append(tf)
            lengths.append(length)
    connection = await session.connection()
    await connection.execute(
        insert(_log),
        [
            {
                "collection_id": collection_id,
                "version": version,
                "first": first,
                "last": last,
                "added": True,
            }
        ],
    )
    await _prune_log(session, collection_id, version)
    await connection.execute(
        insert(_segment),
        [
            {
                "collection_id": collection_id,
                "segment": first,
                "last": last,
                "terms": " ".join(sorted(by_term)),
            }
        ],
    )
    forward = [
        {
            "chunk_id": chunk_id,
            "collection_id": collection_id,
            "number": number,
            "segment": first,
            "length": counts[chunk_id],
        }
        for number, (chunk_id, _) in enumerate(chunks, start=first)
    ]
    for start in range(0, len(forward), _INSERT_BATCH):
        await connection.execute(insert(_chunk), forward[start : start + _INSERT_BATCH])
    rows = [(collection_id, term, first, pack(*by_term[term])) for term in sorted(by_term)]
    await _insert(session, rows)
    return counts


async def _insert(session: AsyncSession, rows: list[tuple[str, str, int, bytes]]) -> None:
    """Bulk-insert posting rows in the session's transaction.

    PostgreSQL gets ``COPY`` on the session's own psycopg connection (2-3x faster than
    executemany); SQLite a driver-level executemany of tuples (SQLAlchemy's per-row
    parameter processing cost as much as SQLite itself).
    """
    if not rows:
        return
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
    statement = f"INSERT INTO {_posting.name} ({columns}) VALUES ({', '.join([marker] * 4)})"
    for start in range(0, len(rows), _INSERT_BATCH):
        await connection.exec_driver_sql(statement, rows[start : start + _INSERT_BATCH])


async def _prune_log(session: AsyncSession, collection_id: str, version: int) -> None:
    """Drop log entries that fell out of the window, now and then (a key range delete)."""
    if version % 16 == 0:
        await session.execute(
            delete(_log).where(
                _log.c.collection_id == collection_id, _log.c.version <= version - LOG_KEEP
            )
        )


async def _add_counts(
    session: AsyncSession, collection_id: str, deltas: Counter[str]
) -> dict[str, int]:
    """Add ``deltas`` to the collection's counters (upserts, reserved rows first).

    Sorted, so every writer locks rows in the same order, starting with ``#chunks``. The
    ``RETURNING`` makes SQLAlchemy batch the rows into multi-row statements. Returns the
    new values of the reserved counters in ``deltas``.
    """
    connection = await session.connection()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_term)
    statement = statement.on_conflict_do_update(
        index_elements=[_term.c.collection_id, _term.c.term],
        set_={"df": _term.c.df + statement.excluded.df},
    ).returning(_term.c.term, _term.c.df)
    order = [t for t in RESERVED if t in deltas] + sorted(t for t in deltas if t not in RESERVED)
    rows = [{"collection_id": collection_id, "term": t, "df": deltas[t]} for t in order]
    values: dict[str, int] = {}
    for start in range(0, len(rows), _INSERT_BATCH):
        batch = rows[start : start + _INSERT_BATCH]
        result = await connection.execute(statement, batch)
        for term, value in result.all():
            if term in RESERVED:
                values[term] = int(value)
    return values


def _runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted numbers as (first, last) runs of consecutive ones."""
    out: list[tuple[int, int]] = []
    for number in sorted(numbers):
        if out and number == out[-1][1] + 1:
            out[-1] = (out[-1][0], number)
        else:
            out.append((number, number))
    return out


async def remove_chunks(session: AsyncSession, chunk_ids: Sequence[str]) -> None:
    """Delete these chunks' index entries (in the caller's transaction, with the chunks).

    Unknown or already removed ids are ignored; the counters lose exactly what was deleted:
    the chunk's forward row is deleted first (``RETURNING`` its number), so of two
    concurrent removals only one sees it, and only that one deletes its postings.
    """
    ids = list(dict.fromkeys(chunk_ids))
    removed: defaultdict[tuple[str, int], set[int]] = defaultdict(set)
    deltas: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for start in range(0, len(ids), _IDS_BATCH):
        result = await session.execute(
            delete(_chunk)
            .where(_chunk.c.chunk_id.in_(ids[start : start + _IDS_BATCH]))
            .returning(_chunk.c.collection_id, _chunk.c.number, _chunk.c.segment, _chunk.c.length)
        )
        for collection_id, number, segment, length in result.all():
            removed[(collection_id, int(segment))].add(int(number))
            counters = deltas[collection_id]
            counters[CHUNKS_TERM] -= 1
            counters[TOKENS_TERM] -= int(length)
    for (collection_id, segment), numbers in sorted(removed.items()):  # lock order
        await _remove_from_segment(session, collection_id, segment, numbers, deltas[collection_id])
    for collection_id, counters in deltas.items():
        counters[VERSION_TERM] = 1
        values = await _add_counts(session, collection_id, counters)
        version = values[VERSION_TERM]
        gone = [n for (c, _), numbers in removed.items() if c == collection_id for n in numbers]
        await session.execute(
            insert(_log),
            [
                {
                    "collection_id": collection_id,
                    "version": version,
                    "first": first,
                    "last": last,
                    "added": False,
                }
                for first, last in _runs(gone)
            ],
        )
        await _prune_log(session, collection_id, version)
        touched = [t for t in counters if t not in MONOTONIC]
        for start in range(0, len(touched), _IDS_BATCH):
            await session.execute(
                delete(_term).where(
                    _term.c.collection_id == collection_id,
                    _term.c.term.in_(touched[start : start + _IDS_BATCH]),
                    _term.c.df <= 0,
                )
            )


_segment_rows = (
    select(_posting.c.term, _posting.c.postings)
    .where(
        _posting.c.collection_id == bindparam("collection_id"),
        _posting.c.segment == bindparam("segment"),
        _posting.c.term.in_(bindparam("terms", expanding=True)),
    )
    .order_by(_posting.c.term)
)


async def _remove_from_segment(
    session: AsyncSession,
    collection_id: str,
    segment: int,
    numbers: set[int],
    deltas: Counter[str],
) -> None:
    """Take ``numbers`` (forward rows already deleted) out of one segment's posting rows.

    Holds the segment row (``FOR UPDATE``), so concurrent removals from one segment take
    turns and each reads the rows the previous one left. If no chunk of the segment is
    left, its rows are deleted by key (``RETURNING`` their sizes for the df counters);
    otherwise each row loses these numbers and is rewritten, or deleted when emptied.
    """
    found = (
        await session.execute(
            select(_segment.c.last, _segment.c.terms)
            .where(_segment.c.collection_id == collection_id, _segment.c.segment == segment)
            .with_for_update()
        )
    ).first()
    if found is None:
        return
    last, encoded = int(found[0]), found[1]
    segment_terms = encoded.split()
    left = await session.scalar(
        select(func.count()).where(
            _chunk.c.collection_id == collection_id,
            _chunk.c.number >= segment,
            _chunk.c.number <= last,
        )
    )
    key = (_posting.c.collection_id == collection_id) & (_posting.c.segment == segment)
    if not left:
        for start in range(0, len(segment_terms), _IDS_BATCH):
            result = await session.execute(
                delete(_posting)
                .where(key, _posting.c.term.in_(segment_terms[start : start + _IDS_BATCH]))
                .returning(_posting.c.term, _posting.c.postings)
            )
            for term, data in result.all():
                deltas[term] -= count(data)
        await session.execute(
            delete(_segment).where(
                _segment.c.collection_id == collection_id, _segment.c.segment == segment
            )
        )
        return
    wanted = np.fromiter(numbers, np.uint32, len(numbers))
    emptied: list[str] = []
    rewritten: list[dict[str, Any]] = []
    for start in range(0, len(segment_terms), _IDS_BATCH):
        result = await session.execute(
            _segment_rows,
            {
                "collection_id": collection_id,
                "segment": segment,
                "terms": segment_terms[start : start + _IDS_BATCH],
            },
        )
        for term, data in result.all():
            row_numbers, tf, length = unpack(data)
            gone = np.isin(row_numbers, wanted)
            hits = int(gone.sum())
            if not hits:
                continue
            deltas[term] -= hits
            if hits == len(row_numbers):
                emptied.append(term)
            else:
                keep = ~gone
                rewritten.append({"t": term, "p": pack(row_numbers[keep], tf[keep], length[keep])})
    for start in range(0, len(emptied), _IDS_BATCH):
        await session.execute(
            delete(_posting).where(key, _posting.c.term.in_(emptied[start : start + _IDS_BATCH]))
        )
    if rewritten:
        await session.execute(
            update(_posting)
            .where(key, _posting.c.term == bindparam("t"))
            .values(postings=bindparam("p")),
            rewritten,
        )
    if emptied:
        alive = sorted(set(segment_terms) - set(emptied))
        await session.execute(
            update(_segment)
            .where(_segment.c.collection_id == collection_id, _segment.c.segment == segment)
            .values(terms=" ".join(alive))
        )


async def remove_collection(session: AsyncSession, collection_id: str) -> None:
    """Delete a collection's whole index (chunk rows go by cascade; the index has no FK)."""
    for table in (_posting, _segment, _chunk, _log, _term):
        await session.execute(delete(table).where(table.c.collection_id == collection_id))


async def rebuild_statistics(session: AsyncSession, collection_id: str) -> None:
    """Recompute the collection's counters from its index rows (repair; O(postings)).

    Only needed if postings were ever written around this module; the counters are exact
    otherwise. Holds the collection's ``#chunks`` row, so writers wait for it; the write
    count and the next number go on (never back).
    """
    await _add_counts(session, collection_id, Counter({CHUNKS_TERM: 0}))  # lock first
    kept = dict(
        (
            await session.execute(
                select(_term.c.term, _term.c.df).where(
                    _term.c.collection_id == collection_id, _term.c.term.in_(MONOTONIC)
                )
            )
        ).all()
    )
    df: Counter[str] = Counter()
    rows = await session.stream(
        select(_posting.c.term, _posting.c.postings).where(
            _posting.c.collection_id == collection_id
        )
    )
    async for term, data in rows:
        df[term] += count(data)
    chunks, total = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(_chunk.c.length), 0)).where(
                _chunk.c.collection_id == collection_id
            )
        )
    ).one()
    if chunks:
        df[CHUNKS_TERM] = int(chunks)
        df[TOKENS_TERM] = int(total)
    await session.execute(delete(_term).where(_term.c.collection_id == collection_id))
    df.update({term: int(value) for term, value in kept.items()})
    df[VERSION_TERM] = int(kept.get(VERSION_TERM, 0)) + 1
    await _add_counts(session, collection_id, +df)


# --- search ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stats:
    """What BM25 needs to know about the collection for one query."""

    chunks: int
    tokens: int
    average_length: float
    version: int
    numbers: int
    df: dict[str, int]


async def _stats(session: AsyncSession, collection_id: str, wanted: Sequence[str]) -> _Stats:
    """N, total length, write count, numbers and each term's df: one key-lookup statement."""
    result = await session.execute(
        select(_term.c.term, _term.c.df).where(
            _term.c.collection_id == collection_id,
            _term.c.term.in_([*RESERVED, *wanted]),
        )
    )
    counters = {term: int(df) for term, df in result}
    chunks = counters.pop(CHUNKS_TERM, 0)
    total = counters.pop(TOKENS_TERM, 0)
    version = counters.pop(VERSION_TERM, 0)
    numbers = counters.pop(NEXT_TERM, 0)
    return _Stats(
        chunks=chunks,
        tokens=total,
        average_length=total / chunks if chunks > 0 else 0.0,
        version=version,
        numbers=numbers,
        df=counters,
    )


def idf(chunks: int, df: int) -> float:
    """BM25's idf: ln(1 + (N - df + 0.5) / (df + 0.5)), never negative."""
    return math.log(1.0 + (chunks - df + 0.5) / (df + 0.5))


CACHE = PostingCache()
"""This process's cache (empty until the first search; sized by :func:`configure`)."""


async def _entry(session: AsyncSession, collection_id: str, version: int) -> CachedCollection:
    """The collection's cache entry brought up to ``version`` (or a private one if behind).

    Catching up reads the log since the entry's version (one range of the primary key);
    every write logs at least one entry, so a gap means the index changed under the log.
    """
    entry = CACHE.collection(collection_id)
    if entry is None or entry.stale or version - entry.version > LOG_KEEP // 2:
        return CACHE.start(collection_id, version)
    if version < entry.version:  # this query's snapshot predates the cache: use neither
        return CachedCollection(version)
    if version > entry.version:
        since = entry.version
        result = await session.execute(
            select(_log.c.version, _log.c.first, _log.c.last, _log.c.added)
            .where(
                _log.c.collection_id == collection_id,
                _log.c.version > since,
                _log.c.version <= version,
            )
            .order_by(_log.c.version, _log.c.first)
        )
        entries = [(int(v), int(f), int(la), bool(a)) for v, f, la, a in result.all()]
        if len({e[0] for e in entries}) != version - since:
            # A version with no log entry (statistics rebuilt, a migration): start over.
            return CACHE.start(collection_id, version)
        entry.apply(entries)
    return entry


async def _read(
    session: AsyncSession, collection_id: str, wanted: Sequence[str], segments: Sequence[int] = ()
) -> defaultdict[str, list[tuple[int, bytes]]]:
    """Packed rows ``(segment, bytes)`` of ``wanted`` terms (only of ``segments`` if given)."""
    query = select(_posting.c.term, _posting.c.segment, _posting.c.postings).where(
        _posting.c.collection_id == collection_id, _posting.c.term.in_(wanted)
    )
    if segments:
        query = query.where(_posting.c.segment.in_(segments))
    grouped: defaultdict[str, list[tuple[int, bytes]]] = defaultdict(list)
    for term, segment, data in (await session.execute(query)).all():
        grouped[term].append((int(segment), data))
    return grouped


async def _postings(
    session: AsyncSession, collection_id: str, stats: _Stats, wanted: Sequence[str]
) -> tuple[CachedCollection, dict[str, Postings]]:
    """The postings of ``wanted`` terms at the query's version: memory first, then SQL.

    A cached term behind the version reads only the rows of the segments added since;
    the others are read whole, and kept if common.
    """
    version = stats.version
    entry = await _entry(session, collection_id, version)
    found: dict[str, Postings] = {}
    missing: list[str] = []
    behind: dict[str, Postings] = {}
    for term in wanted:
        cached = CACHE.get(collection_id, entry, term)
        if cached is None:
            missing.append(term)
        elif cached.version >= version:
            found[term] = cached
        else:
            behind[term] = cached
    if behind:
        oldest = min(p.version for p in behind.values())
        fresh = entry.added_since(oldest)
        if len(fresh) > 4 * _IDS_BATCH:
            missing.extend(behind)  # many new segments: read the terms whole
        else:
            rows: defaultdict[str, list[tuple[int, bytes]]] = defaultdict(list)
            firsts = [first for first, _ in fresh]
            for start in range(0, len(firsts), _IDS_BATCH):
                batch = firsts[start : start + _IDS_BATCH]
                for term, data in (
                    await _read(session, collection_id, list(behind), batch)
                ).items():
                    rows[term].extend(data)
            for term, cached in behind.items():
                newer = entry.added_since(cached.version)
                starts = {first for first, _ in newer}
                mine = [data for segment, data in rows.get(term, ()) if segment in starts]
                found[term] = cached.extended(version, Postings.of_rows(version, mine), newer)
                CACHE.put(collection_id, entry, term, found[term])
    if missing:
        for term, postings in (await _read_whole(session, collection_id, missing, version)).items():
            found[term] = postings
            if stats.df.get(term, 0) >= CACHE_MIN_DF:
                CACHE.put(collection_id, entry, term, postings)
    return entry, found


async def _read_whole(
    session: AsyncSession, collection_id: str, wanted: Sequence[str], version: int
) -> dict[str, Postings]:
    """Every posting of ``wanted`` terms.

    PostgreSQL concatenates a term's rows itself (each row's numbers are its first half,
    its tfs and lengths the quarters after), so a term is one row whatever its number of
    segments: a mid-frequency term in 200 segments cost 200 rows through the driver. Every
    aggregate of a group orders its rows by segment, so the three arrays stay aligned.
    """
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        rows = await _read(session, collection_id, wanted)
        return {
            term: Postings.of_rows(version, (data for _, data in parts))
            for term, parts in rows.items()
        }
    p = _posting.c.postings
    size = func.length(p, type_=Integer)

    def joined(part: Any) -> Any:
        return func.string_agg(part, aggregate_order_by(literal(b""), _posting.c.segment))

    result = await connection.execute(
        select(
            _posting.c.term,
            joined(func.substring(p, 1, size // 2)),
            joined(func.substring(p, size // 2 + 1, size // 4)),
            joined(func.substring(p, size // 4 * 3 + 1)),
        )
        .where(_posting.c.collection_id == collection_id, _posting.c.term.in_(wanted))
        .group_by(_posting.c.term)
    )
    return {
        term: Postings(
            version,
            np.frombuffer(numbers, dtype="<u4"),
            np.frombuffer(tf, dtype="<u2"),
            np.frombuffer(length, dtype="<u2"),
        )
        for term, numbers, tf, length in result.all()
    }


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
    changes a chunk's score. Ties are broken by chunk number (indexing order).
    """
    wanted = sorted(terms(query))
    if not wanted or limit <= 0 or (allowed is not None and not allowed):
        return []
    stats = await _stats(session, collection_id, wanted)
    present = [term for term in wanted if stats.df.get(term, 0) > 0]
    if not present or stats.chunks <= 0:
        return []
    entry, postings = await _postings(session, collection_id, stats, present)
    if not postings:
        return []
    slope = K1 * B / stats.average_length if stats.average_length > 0 else 0.0
    size = max([stats.numbers, *(int(p.numbers.max()) + 1 for p in postings.values() if p.size)])
    scores = np.zeros(size, dtype=np.float64)
    for term, found in postings.items():
        weight = idf(stats.chunks, stats.df[term]) * (K1 + 1)
        tf = found.tf.astype(np.float64)
        share = found.length.astype(np.float64)  # in place from here: fewer temporaries
        share *= slope
        share += K1 * (1 - B)
        share += tf
        np.divide(tf, share, out=share)
        share *= weight
        scores += np.bincount(found.numbers, weights=share, minlength=size)
    if entry.dead:
        scores[entry.dead_numbers()] = 0.0
    if allowed is not None:
        keep = np.zeros(size, dtype=bool)
        numbers = await _numbers_of(session, collection_id, list(allowed))
        numbers = numbers[numbers < size]
        keep[numbers] = True
        scores[~keep] = 0.0
    best = _best(scores, limit)
    names = await _names(session, collection_id, entry, best)
    return [(names[n], float(scores[n])) for n in best if n in names][:limit]


def _best(scores: np.ndarray[Any, Any], limit: int) -> list[int]:
    """The numbers of the ``limit`` best positive scores, ties by number.

    Partitions only the matched scores: ``argpartition`` over the whole array (mostly
    zeros, all equal) measured 11 ms for 100k numbers, this well under one.
    """
    matched = np.flatnonzero(scores > 0)
    if len(matched) > limit:
        values = scores[matched]
        cutoff = np.partition(values, len(values) - limit)[len(values) - limit]
        matched = matched[values >= cutoff]  # ties at the cutoff: all kept, sorted below
    order = np.lexsort((matched, -scores[matched]))
    return [int(n) for n in matched[order[:limit]]]


async def _numbers_of(
    session: AsyncSession, collection_id: str, chunk_ids: Sequence[str]
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The numbers of these chunk ids in the collection (unknown ids: none)."""
    out: list[int] = []
    for start in range(0, len(chunk_ids), _IDS_BATCH):
        result = await session.execute(
            select(_chunk.c.number).where(
                _chunk.c.chunk_id.in_(chunk_ids[start : start + _IDS_BATCH]),
                _chunk.c.collection_id == collection_id,
            )
        )
        out.extend(int(n) for n in result.scalars())
    return np.asarray(out, dtype=np.int64)


async def _names(
    session: AsyncSession, collection_id: str, entry: CachedCollection, numbers: Sequence[int]
) -> dict[int, str]:
    """Chunk ids of these numbers (memory first; a number never changes its chunk)."""
    known = entry.names
    found = {n: known[n] for n in numbers if n in known}
    unknown = [n for n in numbers if n not in known]
    for start in range(0, len(unknown), _IDS_BATCH):
        result = await session.execute(
            select(_chunk.c.number, _chunk.c.chunk_id).where(
                _chunk.c.collection_id == collection_id,
                _chunk.c.number.in_(unknown[start : start + _IDS_BATCH]),
            )
        )
        for number, chunk_id in result.all():
            found[int(number)] = chunk_id
    if len(known) > 200_000:
        known.clear()
    known.update(found)
    return found


# --- warming ---------------------------------------------------------------------------------

_warming: dict[str, tuple[asyncio.Future[Any], CachedCollection | None]] = {}
"""The last warming task per collection, and the cache entry it was started for."""

_settings: dict[str, int] = {"warm_postings": 0}


def configure(*, cache_postings: int, warm_postings: int) -> None:
    """Size this process's cache and its warming (the service calls this with its settings)."""
    CACHE.budget = cache_postings
    _settings["warm_postings"] = min(warm_postings, cache_postings)


def warm_soon(sessions: async_sessionmaker[AsyncSession], collection_id: str) -> None:
    """Start :func:`warm` for the collection in the background, once per cache entry.

    Called after each search: the first search of a collection (or the first after its
    cache entry was started over) schedules it; later calls are a dict lookup.
    """
    budget = _settings["warm_postings"]
    if budget <= 0:
        return
    entry = CACHE.collection(collection_id)
    previous = _warming.get(collection_id)
    if previous is not None and (not previous[0].done() or previous[1] is entry):
        return
    if len(_warming) > 1000:  # forget finished ones: bounded
        for key in [k for k, (task, _) in _warming.items() if task.done()]:
            del _warming[key]
    task = asyncio.get_running_loop().create_task(_warm_logged(sessions, collection_id, budget))
    _warming[collection_id] = (task, entry)


def warm_largest_soon(sessions: async_sessionmaker[AsyncSession]) -> asyncio.Task[int] | None:
    """At start-up: :func:`warm_largest` in the background (None if warming is off)."""
    budget = _settings["warm_postings"]
    if budget <= 0:
        return None
    return asyncio.get_running_loop().create_task(_warm_largest_logged(sessions, budget))


async def _warm_largest_logged(sessions: async_sessionmaker[AsyncSession], budget: int) -> int:
    try:
        return await warm_largest(sessions, budget=budget)
    except Exception:  # a background nicety: never fails start-up
        logger.warning("warming the keyword postings at start-up failed", exc_info=True)
        return 0


async def warm_largest(
    sessions: async_sessionmaker[AsyncSession], *, budget: int, collections: int = 20
) -> int:
    """Warm the largest collections (by ready chunks), the largest first, within ``budget``.

    A process's first searches of a big collection then find its common terms in memory;
    each collection's warming is marked done, so its first search does not warm it again.
    """
    async with sessions() as session:
        rows = (
            await session.execute(
                select(KnowledgeDocument.collection_id, func.sum(KnowledgeDocument.chunks))
                .where(KnowledgeDocument.status == "ready")
                .group_by(KnowledgeDocument.collection_id)
                .order_by(func.sum(KnowledgeDocument.chunks).desc())
                .limit(collections)
            )
        ).all()
    read = 0
    for collection_id, _ in rows:
        if budget - read < CACHE_MIN_DF:
            break
        try:
            read += await warm(sessions, collection_id, budget=budget - read)
        except Exception:  # a background nicety: never fails start-up
            logger.warning(
                "warming the keyword postings of %s failed", collection_id, exc_info=True
            )
            continue
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        _warming[collection_id] = (done, CACHE.collection(collection_id))
    return read


async def _warm_logged(
    sessions: async_sessionmaker[AsyncSession], collection_id: str, budget: int
) -> None:
    try:
        await warm(sessions, collection_id, budget=budget)
    except Exception:  # a background nicety: never fails a request
        logger.warning("warming the keyword postings of %s failed", collection_id, exc_info=True)


_WARM_TERMS = 16
"""Terms read per warming statement (then the event loop serves others)."""


async def warm(
    sessions: async_sessionmaker[AsyncSession], collection_id: str, *, budget: int
) -> int:
    """Read the most frequent terms' postings into the cache, up to ``budget`` postings.

    The common terms are the ones whose first read is slow (a query made of them waited
    for ~100k postings); rare ones are a few rows. Reads in small batches, each in a short
    transaction of its own, so searches interleave. Returns the postings read.
    """
    async with sessions() as session:
        rows = (
            await session.execute(
                select(_term.c.term, _term.c.df)
                .where(
                    _term.c.collection_id == collection_id,
                    _term.c.df >= CACHE_MIN_DF,
                    _term.c.term.not_in(RESERVED),
                )
                .order_by(_term.c.df.desc(), _term.c.term)
                .limit(50_000)
            )
        ).all()
    picked: list[str] = []
    total = 0
    for term, df in rows:
        if total + int(df) > budget:
            break
        picked.append(term)
        total += int(df)
    read = 0
    for start in range(0, len(picked), _WARM_TERMS):
        batch = picked[start : start + _WARM_TERMS]
        async with sessions() as session:
            stats = await _stats(session, collection_id, batch)
            entry = CACHE.collection(collection_id)
            todo = [
                t
                for t in batch
                if stats.df.get(t, 0) > 0 and (entry is None or t not in entry.terms)
            ]
            if todo:
                _, found = await _postings(session, collection_id, stats, todo)
                read += sum(p.size for p in found.values())
        await asyncio.sleep(0)
    return read
