"""A query's view of the index: the collection's statistics and its terms' postings.

Both at one version (``#version``, read with the statistics): postings come from this
process's cache when it holds them (brought up to the version from the write log first)
and from SQL otherwise, so a search never sees anything but the committed index.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from db.driver_sql import DriverReads
from knowledge.keyword_index.layout import (
    CHUNKS_TERM,
    IDS_BATCH,
    LOG,
    LOG_KEEP,
    NEXT_TERM,
    POSTINGS,
    RESERVED,
    TERMS,
    TOKENS_TERM,
    VERSION_TERM,
)
from knowledge.keyword_index.postings import CachedCollection, PostingCache, Postings

CACHE_MIN_DF = 256
"""Terms in at least this many chunks are kept in memory; rarer ones are cheap to re-read."""

CACHE = PostingCache()
"""This process's cache (empty until the first search; sized by :func:`configure`)."""


@dataclass(frozen=True)
class Stats:
    """What BM25 needs to know about the collection for one query."""

    chunks: int
    tokens: int
    average_length: float
    version: int
    numbers: int
    df: dict[str, int]


async def read_stats(reads: DriverReads, collection_id: str, wanted: Sequence[str]) -> Stats:
    """N, total length, write count, numbers and each term's df: one key-lookup statement."""
    among, params = reads.any_of("term", [*RESERVED, *wanted])
    rows = await reads.rows(
        f"SELECT term, df FROM {TERMS.name} WHERE collection_id = ? AND {among}",
        [collection_id, *params],
    )
    counters = {term: int(df) for term, df in rows}
    chunks = counters.pop(CHUNKS_TERM, 0)
    total = counters.pop(TOKENS_TERM, 0)
    version = counters.pop(VERSION_TERM, 0)
    numbers = counters.pop(NEXT_TERM, 0)
    return Stats(
        chunks=chunks,
        tokens=total,
        average_length=total / chunks if chunks > 0 else 0.0,
        version=version,
        numbers=numbers,
        df=counters,
    )


_LOG_SINCE = (
    f'SELECT version, "first", "last", added FROM {LOG.name} '
    "WHERE collection_id = ? AND version > ? AND version <= ? "
    'ORDER BY version, "first"'
)


async def _entry(reads: DriverReads, collection_id: str, version: int) -> CachedCollection:
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
        rows = await reads.rows(_LOG_SINCE, [collection_id, since, version])
        entries = [(int(v), int(f), int(la), bool(a)) for v, f, la, a in rows]
        if len({e[0] for e in entries}) != version - since:
            # A version with no log entry (statistics rebuilt, a migration): start over.
            return CACHE.start(collection_id, version)
        entry.apply(entries)
    return entry


async def _read(
    reads: DriverReads, collection_id: str, wanted: Sequence[str], segments: Sequence[int] = ()
) -> defaultdict[str, list[tuple[int, bytes]]]:
    """Packed rows ``(segment, bytes)`` of ``wanted`` terms (only of ``segments`` if given)."""
    among, params = reads.any_of("term", wanted)
    sql = f"SELECT term, segment, postings FROM {POSTINGS.name} WHERE collection_id = ? AND {among}"
    if segments:
        in_segments, more = reads.any_of("segment", segments)
        sql += f" AND {in_segments}"
        params += more
    grouped: defaultdict[str, list[tuple[int, bytes]]] = defaultdict(list)
    for term, segment, data in await reads.rows(sql, [collection_id, *params]):
        grouped[term].append((int(segment), bytes(data)))
    for parts in grouped.values():
        parts.sort()  # segment order is number order: postings stay sorted by number
    return grouped


async def postings_for(
    reads: DriverReads, collection_id: str, stats: Stats, wanted: Sequence[str]
) -> tuple[CachedCollection, dict[str, Postings]]:
    """The postings of ``wanted`` terms at the query's version: memory first, then SQL.

    A cached term behind the version reads only the rows of the segments added since;
    the others are read whole, and kept if common.
    """
    version = stats.version
    entry = await _entry(reads, collection_id, version)
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
        if len(fresh) > 4 * IDS_BATCH:
            missing.extend(behind)  # many new segments: read the terms whole
        else:
            rows: defaultdict[str, list[tuple[int, bytes]]] = defaultdict(list)
            firsts = [first for first, _ in fresh]
            for start in range(0, len(firsts), IDS_BATCH):
                batch = firsts[start : start + IDS_BATCH]
                for term, data in (await _read(reads, collection_id, list(behind), batch)).items():
                    rows[term].extend(data)
            for term, cached in behind.items():
                newer = entry.added_since(cached.version)
                starts = {first for first, _ in newer}
                mine = [data for segment, data in rows.get(term, ()) if segment in starts]
                found[term] = cached.extended(version, Postings.of_rows(version, mine), newer)
                CACHE.put(collection_id, entry, term, found[term])
    if missing:
        for term, postings in (await _read_whole(reads, collection_id, missing, version)).items():
            found[term] = postings
            if stats.df.get(term, 0) >= CACHE_MIN_DF:
                CACHE.put(collection_id, entry, term, postings)
    return entry, found


def _joined(part: str) -> str:
    return f"string_agg({part}, ''::bytea ORDER BY segment)"


_WHOLE_PG = (
    "SELECT term, "
    + _joined("substring(postings, 1, length(postings) / 2)")
    + ", "
    + _joined("substring(postings, length(postings) / 2 + 1, length(postings) / 4)")
    + ", "
    + _joined("substring(postings, length(postings) / 4 * 3 + 1)")
    + f" FROM {POSTINGS.name} WHERE collection_id = ? AND term = ANY(?) GROUP BY term"
)


async def _read_whole(
    reads: DriverReads, collection_id: str, wanted: Sequence[str], version: int
) -> dict[str, Postings]:
    """Every posting of ``wanted`` terms.

    PostgreSQL concatenates a term's rows itself (each row's numbers are its first half,
    its tfs and lengths the quarters after), so a term is one row whatever its number of
    segments: a mid-frequency term in 200 segments cost 200 rows through the driver. Every
    aggregate of a group orders its rows by segment, so the three arrays stay aligned.
    """
    if not reads.postgres:
        rows = await _read(reads, collection_id, wanted)
        return {
            term: Postings.of_rows(version, (data for _, data in parts))
            for term, parts in rows.items()
        }
    return {
        term: Postings(
            version,
            np.frombuffer(numbers, dtype="<u4"),
            np.frombuffer(tf, dtype="<u2"),
            np.frombuffer(length, dtype="<u2"),
        )
        for term, numbers, tf, length in await reads.rows(_WHOLE_PG, [collection_id, list(wanted)])
    }
