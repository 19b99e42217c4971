"""First come, first served turns for CPU-bound request work on the event loop.

Under load an event loop shares its core among every request in flight: a request's steps
interleave with all the others', so each one takes about (requests in flight) × its own CPU
and the slow ones (a query with common words) finish last — the p95 follows the costliest
requests. Taking turns in arrival order gives the same throughput (the core is busy either
way) but each request then waits for the work queued ahead of it, which averages out: the
tail shrinks towards the mean. Only CPU-bound stretches take a turn; waits on a provider
(an embedding call) stay outside, so a slow provider never holds the queue.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class CpuTurns:
    """At most ``limit`` holders at a time, admitted in arrival order (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        # One semaphore per event loop (an asyncio semaphore belongs to the loop it first
        # waited on); a served app has one loop, tests and embedded runners may have several.
        self._semaphores: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore
        ] = weakref.WeakKeyDictionary()

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold a turn for the block (asyncio's semaphore wakes its waiters in FIFO order)."""
        if self._limit <= 0:
            yield
            return
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self._limit)
        async with semaphore:
            yield
