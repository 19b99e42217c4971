"""Warming: read common terms' postings into this process's cache before searches need them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.driver_sql import DriverReads
from db.models import KnowledgeDocument
from knowledge.keyword_index import reads
from knowledge.keyword_index.layout import RESERVED, TERMS
from knowledge.keyword_index.postings import CachedCollection
from knowledge.keyword_index.reads import postings_for, read_stats

logger = logging.getLogger(__name__)

_warming: dict[str, tuple[asyncio.Future[Any], CachedCollection | None]] = {}
"""The last warming task per collection, and the cache entry it was started for."""

_settings: dict[str, int] = {"warm_postings": 0}


def configure(*, cache_postings: int, warm_postings: int) -> None:
    """Size this process's cache and its warming (the service calls this with its settings)."""
    reads.CACHE.budget = cache_postings
    _settings["warm_postings"] = min(warm_postings, cache_postings)


def warm_soon(sessions: async_sessionmaker[AsyncSession], collection_id: str) -> None:
    """Start :func:`warm` for the collection in the background, once per cache entry.

    Called after each search: the first search of a collection (or the first after its
    cache entry was started over) schedules it; later calls are a dict lookup.
    """
    budget = _settings["warm_postings"]
    if budget <= 0:
        return
    entry = reads.CACHE.collection(collection_id)
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
        if budget - read < reads.CACHE_MIN_DF:
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
        _warming[collection_id] = (done, reads.CACHE.collection(collection_id))
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
                select(TERMS.c.term, TERMS.c.df)
                .where(
                    TERMS.c.collection_id == collection_id,
                    TERMS.c.df >= reads.CACHE_MIN_DF,
                    TERMS.c.term.not_in(RESERVED),
                )
                .order_by(TERMS.c.df.desc(), TERMS.c.term)
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
            db_reads = await DriverReads.on(await session.connection())
            stats = await read_stats(db_reads, collection_id, batch)
            entry = reads.CACHE.collection(collection_id)
            todo = [
                t
                for t in batch
                if stats.df.get(t, 0) > 0 and (entry is None or t not in entry.terms)
            ]
            if todo:
                _, found = await postings_for(db_reads, collection_id, stats, todo)
                read += sum(p.size for p in found.values())
        await asyncio.sleep(0)
    return read
