"""Writes to the keyword index, in the caller's transaction (never half a document).

Counters change by increments, so concurrent ingests and deletes add up exactly; every
writer locks ``#chunks`` first (one lock order), bumps ``#version`` and logs the numbers
it added or removed, which is what keeps every process's posting cache exact.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from knowledge.keyword_index.layout import (
    CHUNKS,
    CHUNKS_TERM,
    COLUMNS,
    IDS_BATCH,
    LOG,
    LOG_KEEP,
    MONOTONIC,
    NEXT_TERM,
    POSTINGS,
    RESERVED,
    SEGMENTS,
    TERMS,
    TOKENS_TERM,
    VERSION_TERM,
)
from knowledge.keyword_index.postings import count, pack, unpack
from knowledge.keywords import terms

_INSERT_BATCH = 5000
"""Rows per executemany: bounded memory, few round trips."""


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
        insert(LOG),
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
        insert(SEGMENTS),
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
        await connection.execute(insert(CHUNKS), forward[start : start + _INSERT_BATCH])
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
    columns = ", ".join(COLUMNS)
    if connection.dialect.driver == "psycopg":
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        async with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {POSTINGS.name} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                await copy.write_row(row)
        return
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(connection.dialect.paramstyle)
    if marker is None:  # another driver: SQLAlchemy's portable executemany
        for start in range(0, len(rows), _INSERT_BATCH):
            batch = rows[start : start + _INSERT_BATCH]
            await connection.execute(
                insert(POSTINGS), [dict(zip(COLUMNS, row, strict=True)) for row in batch]
            )
        return
    statement = f"INSERT INTO {POSTINGS.name} ({columns}) VALUES ({', '.join([marker] * 4)})"
    for start in range(0, len(rows), _INSERT_BATCH):
        await connection.exec_driver_sql(statement, rows[start : start + _INSERT_BATCH])


async def _prune_log(session: AsyncSession, collection_id: str, version: int) -> None:
    """Drop log entries that fell out of the window, now and then (a key range delete)."""
    if version % 16 == 0:
        await session.execute(
            delete(LOG).where(
                LOG.c.collection_id == collection_id, LOG.c.version <= version - LOG_KEEP
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
    statement = dialect.insert(TERMS)
    statement = statement.on_conflict_do_update(
        index_elements=[TERMS.c.collection_id, TERMS.c.term],
        set_={"df": TERMS.c.df + statement.excluded.df},
    ).returning(TERMS.c.term, TERMS.c.df)
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
    for start in range(0, len(ids), IDS_BATCH):
        result = await session.execute(
            delete(CHUNKS)
            .where(CHUNKS.c.chunk_id.in_(ids[start : start + IDS_BATCH]))
            .returning(CHUNKS.c.collection_id, CHUNKS.c.number, CHUNKS.c.segment, CHUNKS.c.length)
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
            insert(LOG),
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
        for start in range(0, len(touched), IDS_BATCH):
            await session.execute(
                delete(TERMS).where(
                    TERMS.c.collection_id == collection_id,
                    TERMS.c.term.in_(touched[start : start + IDS_BATCH]),
                    TERMS.c.df <= 0,
                )
            )


_segment_rows = (
    select(POSTINGS.c.term, POSTINGS.c.postings)
    .where(
        POSTINGS.c.collection_id == bindparam("collection_id"),
        POSTINGS.c.segment == bindparam("segment"),
        POSTINGS.c.term.in_(bindparam("terms", expanding=True)),
    )
    .order_by(POSTINGS.c.term)
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
            select(SEGMENTS.c.last, SEGMENTS.c.terms)
            .where(SEGMENTS.c.collection_id == collection_id, SEGMENTS.c.segment == segment)
            .with_for_update()
        )
    ).first()
    if found is None:
        return
    last, encoded = int(found[0]), found[1]
    segment_terms = encoded.split()
    left = await session.scalar(
        select(func.count()).where(
            CHUNKS.c.collection_id == collection_id,
            CHUNKS.c.number >= segment,
            CHUNKS.c.number <= last,
        )
    )
    key = (POSTINGS.c.collection_id == collection_id) & (POSTINGS.c.segment == segment)
    if not left:
        for start in range(0, len(segment_terms), IDS_BATCH):
            result = await session.execute(
                delete(POSTINGS)
                .where(key, POSTINGS.c.term.in_(segment_terms[start : start + IDS_BATCH]))
                .returning(POSTINGS.c.term, POSTINGS.c.postings)
            )
            for term, data in result.all():
                deltas[term] -= count(data)
        await session.execute(
            delete(SEGMENTS).where(
                SEGMENTS.c.collection_id == collection_id, SEGMENTS.c.segment == segment
            )
        )
        return
    wanted = np.fromiter(numbers, np.uint32, len(numbers))
    emptied: list[str] = []
    rewritten: list[dict[str, Any]] = []
    for start in range(0, len(segment_terms), IDS_BATCH):
        result = await session.execute(
            _segment_rows,
            {
                "collection_id": collection_id,
                "segment": segment,
                "terms": segment_terms[start : start + IDS_BATCH],
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
    for start in range(0, len(emptied), IDS_BATCH):
        await session.execute(
            delete(POSTINGS).where(key, POSTINGS.c.term.in_(emptied[start : start + IDS_BATCH]))
        )
    if rewritten:
        await session.execute(
            update(POSTINGS)
            .where(key, POSTINGS.c.term == bindparam("t"))
            .values(postings=bindparam("p")),
            rewritten,
        )
    if emptied:
        alive = sorted(set(segment_terms) - set(emptied))
        await session.execute(
            update(SEGMENTS)
            .where(SEGMENTS.c.collection_id == collection_id, SEGMENTS.c.segment == segment)
            .values(terms=" ".join(alive))
        )


async def remove_collection(session: AsyncSession, collection_id: str) -> None:
    """Delete a collection's whole index (chunk rows go by cascade; the index has no FK)."""
    for table in (POSTINGS, SEGMENTS, CHUNKS, LOG, TERMS):
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
                select(TERMS.c.term, TERMS.c.df).where(
                    TERMS.c.collection_id == collection_id, TERMS.c.term.in_(MONOTONIC)
                )
            )
        ).all()
    )
    df: Counter[str] = Counter()
    rows = await session.stream(
        select(POSTINGS.c.term, POSTINGS.c.postings).where(
            POSTINGS.c.collection_id == collection_id
        )
    )
    async for term, data in rows:
        df[term] += count(data)
    chunks, total = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(CHUNKS.c.length), 0)).where(
                CHUNKS.c.collection_id == collection_id
            )
        )
    ).one()
    if chunks:
        df[CHUNKS_TERM] = int(chunks)
        df[TOKENS_TERM] = int(total)
    await session.execute(delete(TERMS).where(TERMS.c.collection_id == collection_id))
    df.update({term: int(value) for term, value in kept.items()})
    df[VERSION_TERM] = int(kept.get(VERSION_TERM, 0)) + 1
    await _add_counts(session, collection_id, +df)
