"""Rate limiting of repeated authentication failures per client address.

A client whose credentials were rejected ``limit`` times within ``window`` seconds gets
429 (with ``Retry-After``) instead of 401 for every further rejected credential until the
window ends: a guesser learns nothing more and a misconfigured client is told to back off.
Only failures are counted, so a valid token costs nothing extra (no Redis round trip on
the hot path). With ``AHC_REDIS_URL`` the counts live in Redis (fixed windows, ``INCR`` +
``PEXPIRE NX``) and hold across instances; otherwise in process (bounded). A Redis outage
degrades to plain 401s (logged).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

from core.config import Settings
from core.keys import scoped_key

logger = logging.getLogger(__name__)

MAX_TRACKED_CLIENTS = 100_000


class AuthFailureLimiter(Protocol):
    """Counts rejected credentials per client address."""

    async def record_failure(self, client: str) -> float:
        """Count one rejected credential of ``client``: seconds it is blocked (0: not)."""
        ...


class MemoryAuthFailures:
    """In-process fixed windows, the least recently failing clients forgotten first."""

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    async def record_failure(self, client: str) -> float:
        """Start or extend ``client``'s window; past the limit, the rest of the window."""
        now = time.monotonic()
        started, count = self._windows.get(client, (now, 0))
        if started + self._window <= now:
            started, count = now, 0
        self._windows[client] = (started, count + 1)
        self._windows.move_to_end(client)
        while len(self._windows) > MAX_TRACKED_CLIENTS:
            self._windows.popitem(last=False)
        return started + self._window - now if count + 1 > self._limit else 0.0


class RedisAuthFailures:
    """Fixed windows in Redis, shared by every instance."""

    def __init__(self, redis: Any, prefix: str, limit: int, window: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._limit = limit
        self._window_ms = max(1, int(window * 1000))

    async def record_failure(self, client: str) -> float:
        """Count the failure (the window's first sets its expiry); 0 when Redis is down."""
        key = self._prefix + scoped_key("auth-failures", client, sep=":")
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.pexpire(key, self._window_ms, nx=True)
                pipe.pttl(key)
                count, _, ttl_ms = await pipe.execute()
        except Exception:  # an outage must not turn every rejection into a 500
            logger.warning("auth failure counter unavailable (Redis)", exc_info=True)
            return 0.0
        if int(count) <= self._limit:
            return 0.0
        return max(float(ttl_ms), 1.0) / 1000


def auth_failure_limiter(settings: Settings, redis: Any | None) -> AuthFailureLimiter:
    """The limiter the settings ask for: on the service's Redis client when it has one."""
    limit, window = settings.auth_failure_limit, settings.auth_failure_window_seconds
    if redis is None:
        return MemoryAuthFailures(limit, window)
    return RedisAuthFailures(redis, settings.redis_prefix, limit, window)
