"""Turn locks: one turn at a time per key, bounded waits, no leaks (in-process and Redis)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from core.errors import ApiError
from services.turn_locks import (
    MemoryTurnLocks,
    RedisTurnLocks,
    TurnLocks,
    after_response,
    hold_turn,
    response_scope,
)

REDIS_URL = "redis://127.0.0.1:6379/0"

LockFactory = Callable[..., TurnLocks]


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def make_locks(request: pytest.FixtureRequest) -> LockFactory:
    """Build locks of either backend; Redis ones under a prefix of this test's own."""
    if request.param == "memory":
        return lambda wait=5.0, lease=30.0: MemoryTurnLocks(wait_seconds=wait)
    client: Redis = request.getfixturevalue("redis_client")
    prefix = f"test-{uuid.uuid4().hex}:"
    return lambda wait=5.0, lease=30.0: RedisTurnLocks(
        client, prefix, wait_seconds=wait, lease_seconds=lease
    )


async def test_turns_of_one_key_never_overlap(make_locks: LockFactory) -> None:
    locks = make_locks()
    inside = 0
    peak = 0
    done: list[int] = []

    async def turn(i: int) -> None:
        nonlocal inside, peak
        async with hold_turn(locks, "org/t1"):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.02)
            inside -= 1
            done.append(i)

    await asyncio.gather(*(turn(i) for i in range(8)))
    assert peak == 1
    assert sorted(done) == list(range(8))


async def test_other_keys_do_not_wait(make_locks: LockFactory) -> None:
    locks = make_locks(wait=0.3)
    async with hold_turn(locks, "org/t1"):
        async with asyncio.timeout(0.25):
            async with hold_turn(locks, "org/t2"):
                pass


async def test_a_long_wait_is_a_409_thread_busy(make_locks: LockFactory) -> None:
    locks = make_locks(wait=0.2)
    async with hold_turn(locks, "org/t1"):
        with pytest.raises(ApiError) as caught:
            await locks.acquire("org/t1")
    assert caught.value.status_code == 409
    assert caught.value.code == "thread_busy"
    assert int(caught.value.headers["Retry-After"]) >= 1
    lease = await locks.acquire("org/t1")  # the loser left nothing behind
    await lease.release()
    await lease.release()  # idempotent


async def test_a_cancelled_holder_or_waiter_releases(make_locks: LockFactory) -> None:
    locks = make_locks(wait=2.0)
    entered = asyncio.Event()

    async def holder() -> None:
        async with hold_turn(locks, "org/t1"):
            entered.set()
            await asyncio.sleep(30)

    async def waiter() -> None:
        async with hold_turn(locks, "org/t1"):
            pass

    held = asyncio.create_task(holder())
    await entered.wait()
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0.05)
    waiting.cancel()
    held.cancel()
    for task in (held, waiting):
        with pytest.raises(asyncio.CancelledError):
            await task
    async with asyncio.timeout(1):
        async with hold_turn(locks, "org/t1"):
            pass


async def test_memory_locks_forget_idle_keys() -> None:
    locks = MemoryTurnLocks(wait_seconds=0.05)
    for i in range(100):
        async with hold_turn(locks, f"org/t{i}"):
            assert len(locks) == 1
    assert len(locks) == 0
    async with hold_turn(locks, "org/x"):
        with pytest.raises(ApiError):  # a waiter that gave up is forgotten too
            await locks.acquire("org/x")
        assert len(locks) == 1
    assert len(locks) == 0


async def test_redis_lease_is_renewed_while_held_and_expires_when_abandoned(
    redis_client: Redis,
) -> None:
    prefix = f"test-{uuid.uuid4().hex}:"
    locks = RedisTurnLocks(redis_client, prefix, wait_seconds=0.5, lease_seconds=1.0)
    other = RedisTurnLocks(redis_client, prefix, wait_seconds=0.3, lease_seconds=1.0)
    lease = await locks.acquire("org/t1")
    await asyncio.sleep(1.5)  # longer than one lease: the holder renewed it
    with pytest.raises(ApiError):
        await other.acquire("org/t1")
    await lease.release()
    assert await redis_client.exists(f"{prefix}turn:org/t1") == 0

    # A holder that dies (no renewal, no release): the lease runs out, the thread frees up.
    dead = redis_client.lock(f"{prefix}turn:org/t2", timeout=0.5)
    assert await dead.acquire(blocking=False)
    async with asyncio.timeout(2):
        freed = await RedisTurnLocks(
            redis_client, prefix, wait_seconds=1.5, lease_seconds=1.0
        ).acquire("org/t2")
    await freed.release()


async def test_the_response_scope_runs_what_a_request_left_open() -> None:
    done: list[str] = []

    async def cleanup() -> None:
        done.append("cleaned")

    after_response(cleanup)  # outside a request: nothing to do, nothing kept
    async with response_scope():
        after_response(cleanup)
        assert done == []
    assert done == ["cleaned"]


async def test_a_stream_left_suspended_is_released_at_the_end_of_its_request() -> None:
    locks = MemoryTurnLocks(wait_seconds=0.1)

    async def stream() -> AsyncIterator[int]:
        async with hold_turn(locks, "org/t1"):
            yield 1
            yield 2

    async with response_scope():
        suspended = stream()
        assert await anext(suspended) == 1  # the response stops iterating here
    lease = await locks.acquire("org/t1")  # the request's end released the thread
    await lease.release()
    await suspended.aclose()  # collected later: releasing again is harmless
    assert len(locks) == 0
