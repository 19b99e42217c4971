"""The auth failure counters on their own: windows, bounds, and a Redis outage."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from auth import failures
from auth.failures import MemoryAuthFailures, RedisAuthFailures


def test_memory_counter_blocks_past_the_limit_for_the_window() -> None:
    async def run() -> list[float]:
        limiter = MemoryAuthFailures(limit=2, window=30)
        return [await limiter.record_failure("10.0.0.1") for _ in range(3)]

    first, second, third = asyncio.run(run())
    assert first == second == 0
    assert 29 < third <= 30


def test_memory_counter_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failures, "MAX_TRACKED_CLIENTS", 10)
    limiter = MemoryAuthFailures(limit=1, window=30)

    async def run() -> None:
        for number in range(100):
            await limiter.record_failure(f"10.0.0.{number}")

    asyncio.run(run())
    assert len(limiter._windows) == 10


def test_redis_outage_degrades_to_plain_401s() -> None:
    async def run() -> float:
        redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
        try:
            return await RedisAuthFailures(redis, "x:", 1, 30).record_failure("10.0.0.1")
        finally:
            await redis.aclose()

    assert asyncio.run(run()) == 0
