"""Rate limiting of repeated authentication failures per client address.

A client whose credentials were rejected ``limit`` times within ``window`` seconds gets
429 (with ``Retry-After``) for every credentialed request until the window ends, so tokens
cannot be guessed at line rate and a misconfigured client stops hammering the verifier.
With ``AHC_REDIS_URL`` the counts live in Redis (fixed windows, ``INCR`` + ``EXPIRE``) and
hold across instances; otherwise in process (bounded). A Redis outage lets requests
through (logged): authentication itself still applies.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from core.config import Settings
from core.keys import scoped_key

logger = logging.getLogger(__name__)

MAX_TRACKED_CLIENTS = 100_000


class AuthFailureLimiter(Protocol):
    """Counts rejected credentials per client address."""

    async def blocked_for(self, client: str) -> float:
        """Seconds ``client`` must still wait (0: not blocked)."""
        ...

    async def record_failure(self, client: str) -> None:
        """Count one rejected credential of ``client``."""
        ...


class MemoryAuthFailures:
    """In-process fixed windows, the least recently failing clients forgotten first."""

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    async def blocked_for(self, client: str) -> float:
        """Seconds left in a full window of ``client``."""
        entry = self._windows.get(client)
        if entry is None:
            return 0.0
        started, count = entry
        left = started + self._window - time.monotonic()
        if left <= 0:
            del self._windows[client]
            return 0.0
        return left if count >= self._limit else 0.0

    async def record_failure(self, client: str) -> None:
        """Start or extend ``client``'s window."""
        now = time.monotonic()
        started, count = self._windows.get(client, (now, 0))
        if started + self._window <= now:
            started, count = now, 0
        self._windows[client] = (started, count + 1)
        self._windows.move_to_end(client)
        while len(self._windows) > MAX_TRACKED_CLIENTS:
            self._windows.popitem(last=False)


class RedisAuthFailures:
    """Fixed windows in Redis, shared by every instance."""

    def __init__(self, redis: Any, prefix: str, limit: int, window: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._limit = limit
        self._window_ms = max(1, int(window * 1000))

    def _key(self, client: str) -> str:
        return self._prefix + scoped_key("auth-failures", client, sep=":")

    async def blocked_for(self, client: str) -> float:
        """Seconds left in a full window of ``client`` (0 when Redis does not answer)."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(self._key(client))
                pipe.pttl(self._key(client))
                count, ttl_ms = await pipe.execute()
        except Exception:  # an outage must not lock every client out
            logger.warning("auth failure counter unavailable (Redis)", exc_info=True)
            return 0.0
        if count is None or int(count) < self._limit or ttl_ms is None or ttl_ms <= 0:
            return 0.0
        return float(ttl_ms) / 1000

    async def record_failure(self, client: str) -> None:
        """Count the failure; the first of a window sets its expiry."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(self._key(client))
                pipe.pexpire(self._key(client), self._window_ms, nx=True)
                await pipe.execute()
        except Exception:  # likewise: counting is best effort
            logger.warning("auth failure counter unavailable (Redis)", exc_info=True)


@asynccontextmanager
async def open_auth_failures(settings: Settings) -> AsyncIterator[AuthFailureLimiter]:
    """The limiter the settings ask for (Redis with ``redis_url``), closed on exit."""
    limit, window = settings.auth_failure_limit, settings.auth_failure_window_seconds
    if not settings.redis_url:
        yield MemoryAuthFailures(limit, window)
        return
    from redis.asyncio import Redis

    redis = Redis.from_url(settings.redis_url)
    try:
        yield RedisAuthFailures(redis, settings.redis_prefix, limit, window)
    finally:
        await redis.aclose()
