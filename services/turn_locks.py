"""One turn at a time per thread: a lock per checkpoint key, shared by every instance.

A turn reads the thread's checkpoint, calls the model and writes the checkpoint back; two
concurrent turns of one thread would both read the same state and the second write would
drop the first turn. Turns therefore hold the thread's lock from before they read until
after their last write (the rollback of a failed turn included).

Two backends: Redis (``redis_url`` set) shares the lock between instances, with a lease
that a live holder keeps renewing and that expires when its instance dies; otherwise one
``asyncio.Lock`` per key in the process, dropped when nobody holds or waits for it. A
turn that waits longer than ``thread_lock_wait_seconds`` gets a 409 ``thread_busy`` with
``Retry-After``, never an unbounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

from core.errors import ApiError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.lock import Lock as RedisLock

logger = logging.getLogger(__name__)


def thread_busy(retry_after: float) -> ApiError:
    """The answer to a turn that waited too long for the one before it."""
    seconds = max(1, math.ceil(retry_after))
    return ApiError(
        409,
        "thread_busy",
        "another turn of this thread is still running; retry when it has finished",
        headers={"Retry-After": str(seconds)},
    )


class TurnLease(Protocol):
    """A held turn lock; released exactly once (further calls do nothing)."""

    async def release(self) -> None:
        """Let the next turn of the thread run."""
        ...


class TurnLocks(Protocol):
    """Serializes the turns of one thread (key: the thread's checkpoint key)."""

    async def acquire(self, key: str) -> TurnLease:
        """Wait for the thread's turn; 409 ``thread_busy`` after the bounded wait."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@contextlib.asynccontextmanager
async def hold_turn(locks: TurnLocks, key: str) -> AsyncIterator[None]:
    """Run the block as the thread's only turn (released even when cancelled).

    Inside a request, the request's end releases it too: a block suspended in a stream
    its response stopped iterating must not keep the thread locked until collected.
    """
    lease = await locks.acquire(key)
    after_response(lease.release)
    try:
        yield
    finally:
        await _shielded_release(lease)


async def _shielded_release(lease: TurnLease) -> None:
    """Release even from a cancelled task: a lock left held would block the thread."""
    task = asyncio.ensure_future(lease.release())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task  # the release itself is short; finish it, then let the cancel go on
        raise


# --- the request's safety net -------------------------------------------------------------

Cleanup = Callable[[], Awaitable[None]]
_pending: ContextVar[list[Cleanup] | None] = ContextVar("ahc_turn_cleanups", default=None)


def after_response(cleanup: Cleanup) -> None:
    """Also run ``cleanup`` once the request's response is over (it must be idempotent).

    A streamed turn ends (rollback, lock release) in its response body's ``finally``; a
    body the server never started iterating (the client left before the first byte) runs
    no ``finally``, and its thread would stay locked. :func:`response_scope` runs what is
    registered here after the response, whatever happened to the body.
    """
    pending = _pending.get()
    if pending is not None:
        pending.append(cleanup)


@contextlib.asynccontextmanager
async def response_scope() -> AsyncIterator[None]:
    """The scope of one request: runs its registered cleanups at the end (shielded)."""
    pending: list[Cleanup] = []
    token = _pending.set(pending)
    try:
        yield
    finally:
        _pending.reset(token)
        if pending:  # shielded: a cancelled request still ends its turns (in the background)
            await asyncio.shield(asyncio.ensure_future(_run_all(pending)))


async def _run_all(cleanups: list[Cleanup]) -> None:
    for cleanup in cleanups:
        try:
            await cleanup()
        except Exception:
            logger.exception("a turn's cleanup failed")


# --- in-process ------------------------------------------------------------------------


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # holders and waiters; the entry is dropped at zero


class _MemoryLease:
    def __init__(self, owner: MemoryTurnLocks, key: str, entry: _Entry) -> None:
        self._owner = owner
        self._key = key
        self._entry: _Entry | None = entry

    async def release(self) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            entry.lock.release()
            self._owner._leave(self._key, entry)


class MemoryTurnLocks:
    """Turn locks of a single process (the embedded default)."""

    def __init__(self, *, wait_seconds: float) -> None:
        self._wait = wait_seconds
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        """Keys currently held or waited for (the dict never outgrows them)."""
        return len(self._entries)

    async def acquire(self, key: str) -> TurnLease:
        """The key's lock, within the wait bound."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.users += 1
        try:
            async with asyncio.timeout(self._wait):
                await entry.lock.acquire()
        except TimeoutError:
            self._leave(key, entry)
            raise thread_busy(self._wait) from None
        except BaseException:
            self._leave(key, entry)
            raise
        return _MemoryLease(self, key, entry)

    def _leave(self, key: str, entry: _Entry) -> None:
        entry.users -= 1
        if entry.users == 0 and self._entries.get(key) is entry:
            del self._entries[key]

    async def aclose(self) -> None:
        """Nothing to release."""


# --- Redis -----------------------------------------------------------------------------


class _RedisLease:
    def __init__(self, lock: RedisLock, lease_seconds: float) -> None:
        self._lock = lock
        self._released = False
        self._renewal = asyncio.create_task(self._renew(lease_seconds))

    async def _renew(self, lease_seconds: float) -> None:
        """Keep the lease while the turn runs: a long stream outlives one lease."""
        while True:
            await asyncio.sleep(lease_seconds / 3)
            try:
                await self._lock.reacquire()
            except Exception:  # lost (expired during a stall) or Redis gone: log, keep trying
                logger.warning("could not renew a thread's turn lock", exc_info=True)

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewal
        try:
            await self._lock.release()
        except Exception:  # expired meanwhile: the next turn may already hold it
            logger.warning("could not release a thread's turn lock", exc_info=True)


class RedisTurnLocks:
    """Turn locks shared by every instance using the same Redis and prefix."""

    def __init__(
        self, redis: Redis, prefix: str, *, wait_seconds: float, lease_seconds: float
    ) -> None:
        self._redis = redis
        self._prefix = f"{prefix}turn:"
        self._wait = wait_seconds
        self._lease = lease_seconds

    async def acquire(self, key: str) -> TurnLease:
        """The key's lock, within the wait bound (polled: Redis locks have no queue)."""
        lock = self._redis.lock(
            self._prefix + key,
            timeout=self._lease,
            sleep=0.02,
            blocking=True,
            blocking_timeout=self._wait,
            thread_local=False,
        )
        token = uuid.uuid4().hex.encode()
        try:
            acquired = await lock.acquire(token=token)
        except BaseException:  # cancelled mid-command: the SET may have landed, undo it
            lock.local.token = token
            with contextlib.suppress(Exception):
                await asyncio.shield(lock.release())
            raise
        if not acquired:
            raise thread_busy(self._wait)
        return _RedisLease(lock, self._lease)

    async def aclose(self) -> None:
        """The Redis client belongs to the container."""
