"""Window counters with an atomic check-and-add: in Redis (shared) or in the process.

``reserve`` adds every amount only if none of the checks would go over its limit, in one
atomic step (a Lua script in Redis), so concurrent requests on several instances can
never overshoot a limit together. ``adjust`` adds signed deltas (settling a reservation).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Check:
    """Add ``amount`` to ``key`` unless that makes it exceed ``limit``."""

    key: str
    amount: int
    limit: int
    ttl: int


class Counters(Protocol):
    """What the enforcer needs from a counter store."""

    async def reserve(self, checks: list[Check]) -> int | None:
        """Add all amounts atomically; or return the index of the first check that fails."""
        ...

    async def adjust(self, deltas: list[tuple[str, int, int]]) -> None:
        """Add signed ``(key, delta, ttl)`` deltas."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryCounters:
    """Counters of a single process (the embedded default)."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[int, float]] = {}
        self._lock = asyncio.Lock()

    def _get(self, key: str, now: float) -> int:
        value = self._values.get(key)
        if value is None or value[1] <= now:
            return 0
        return value[0]

    async def reserve(self, checks: list[Check]) -> int | None:
        """Check-and-add under one lock."""
        async with self._lock:
            now = time.monotonic()
            for index, check in enumerate(checks):
                if self._get(check.key, now) + check.amount > check.limit:
                    return index
            for check in checks:
                self._values[check.key] = (
                    self._get(check.key, now) + check.amount,
                    now + check.ttl,
                )
            return None

    async def adjust(self, deltas: list[tuple[str, int, int]]) -> None:
        """Add deltas (never below zero)."""
        async with self._lock:
            now = time.monotonic()
            for key, delta, ttl in deltas:
                self._values[key] = (max(self._get(key, now) + delta, 0), now + ttl)

    async def aclose(self) -> None:
        """Nothing to release."""


_RESERVE = """
for i = 1, #KEYS do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if current + tonumber(ARGV[3 * i - 2]) > tonumber(ARGV[3 * i - 1]) then
    return i
  end
end
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[3 * i - 2])
  redis.call('EXPIRE', KEYS[i], ARGV[3 * i])
end
return 0
"""

_ADJUST = """
for i = 1, #KEYS do
  local value = redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])
  if value < 0 then redis.call('SET', KEYS[i], 0) end
  redis.call('EXPIRE', KEYS[i], ARGV[2 * i])
end
return 0
"""


class RedisCounters:
    """Counters shared by every instance of the service (atomic Lua scripts)."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._reserve = self._redis.register_script(_RESERVE)
        self._adjust = self._redis.register_script(_ADJUST)

    async def reserve(self, checks: list[Check]) -> int | None:
        """Check-and-add in one script run."""
        keys = [self._prefix + c.key for c in checks]
        args = [v for c in checks for v in (c.amount, c.limit, c.ttl)]
        failed = int(await self._reserve(keys=keys, args=args))
        return None if failed == 0 else failed - 1

    async def adjust(self, deltas: list[tuple[str, int, int]]) -> None:
        """Add deltas in one script run."""
        if deltas:
            keys = [self._prefix + key for key, _, _ in deltas]
            args = [v for _, delta, ttl in deltas for v in (delta, ttl)]
            await self._adjust(keys=keys, args=args)

    async def ping(self) -> None:
        """Raise if Redis cannot be reached."""
        await self._redis.ping()

    async def aclose(self) -> None:
        """The Redis client belongs to the app (closed in its lifespan)."""
