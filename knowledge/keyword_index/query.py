"""BM25 search over the index: read, score in memory (``scoring``), map the best back to ids."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from db.driver_sql import DriverReads
from knowledge.keyword_index import scoring
from knowledge.keyword_index.layout import CHUNKS, IDS_BATCH
from knowledge.keyword_index.postings import CachedCollection
from knowledge.keyword_index.reads import postings_for, read_stats
from knowledge.keyword_index.scoring import Blocked, Numbers
from knowledge.keywords import terms


@dataclass(frozen=True, slots=True)
class KeywordHits:
    """A keyword search's hits, best first, and the collection's indexed chunks (BM25's N)."""

    hits: list[tuple[str, float]]
    chunks: int = 0


async def search(
    reads: DriverReads,
    collection_id: str,
    query: str,
    *,
    limit: int,
    allowed: Collection[str] | None = None,
) -> KeywordHits:
    """The ``limit`` best chunks for ``query`` by BM25, as (chunk id, score), best first.

    ``allowed`` (the chunk ids that pass the metadata filters) restricts the results, not
    the statistics: N, avgdl and df are always the whole collection's, so a filter never
    changes a chunk's score. Ties are broken by chunk number (indexing order).
    """
    wanted = sorted(terms(query))
    if not wanted or limit <= 0 or (allowed is not None and not allowed):
        return KeywordHits([])
    stats = await read_stats(reads, collection_id, wanted)
    present = [term for term in wanted if stats.df.get(term, 0) > 0]
    if not present or stats.chunks <= 0:
        return KeywordHits([], stats.chunks)
    entry, postings = await postings_for(reads, collection_id, stats, present)
    if not postings:
        return KeywordHits([], stats.chunks)
    dead = entry.dead_numbers() if entry.dead else None
    permitted = None
    if allowed is not None:
        permitted = np.unique(await _numbers_of(reads, collection_id, list(allowed)))
    top = scoring.pruned(stats, postings, limit, _blocker(dead, permitted))
    if top is None:
        scores = scoring.dense(stats, postings)
        if dead is not None:
            scores[dead] = 0.0
        if permitted is not None:
            keep = np.zeros(len(scores), dtype=bool)
            keep[permitted[permitted < len(scores)]] = True
            scores[~keep] = 0.0
        top = [(n, float(scores[n])) for n in scoring.best(scores, limit)]
    names = await _names(reads, collection_id, entry, [n for n, _ in top])
    hits = [(names[n], score) for n, score in top if n in names][:limit]
    return KeywordHits(hits, stats.chunks)


def _blocker(dead: Numbers | None, permitted: Numbers | None) -> Blocked | None:
    """Which candidates may not be returned: removed ones, and those the filters exclude."""
    if dead is None and permitted is None:
        return None

    def blocked(numbers: Numbers) -> np.ndarray[Any, np.dtype[np.bool_]]:
        out = np.zeros(len(numbers), dtype=bool)
        if dead is not None:
            out |= np.isin(numbers, dead)
        if permitted is not None:
            out |= ~np.isin(numbers, permitted)
        return out

    return blocked


async def _numbers_of(
    reads: DriverReads, collection_id: str, chunk_ids: Sequence[str]
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The numbers of these chunk ids in the collection (unknown ids: none)."""
    out: list[int] = []
    for start in range(0, len(chunk_ids), IDS_BATCH):
        among, params = reads.any_of("chunk_id", chunk_ids[start : start + IDS_BATCH])
        rows = await reads.rows(
            f"SELECT number FROM {CHUNKS.name} WHERE {among} AND collection_id = ?",
            [*params, collection_id],
        )
        out.extend(int(n) for (n,) in rows)
    return np.asarray(out, dtype=np.int64)


async def _names(
    reads: DriverReads, collection_id: str, entry: CachedCollection, numbers: Sequence[int]
) -> dict[int, str]:
    """Chunk ids of these numbers (memory first; a number never changes its chunk)."""
    known = entry.names
    found = {n: known[n] for n in numbers if n in known}
    unknown = [n for n in numbers if n not in known]
    for start in range(0, len(unknown), IDS_BATCH):
        among, params = reads.any_of("number", unknown[start : start + IDS_BATCH])
        rows = await reads.rows(
            f"SELECT number, chunk_id FROM {CHUNKS.name} WHERE collection_id = ? AND {among}",
            [collection_id, *params],
        )
        for number, chunk_id in rows:
            found[int(number)] = chunk_id
    if len(known) > 200_000:
        known.clear()
    known.update(found)
    return found
