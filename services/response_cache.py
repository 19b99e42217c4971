"""Exact-match response cache: repeated deterministic questions cost nothing.

A request is cacheable when it is stateless (no ``thread_id``) and deterministic
(``temperature: 0``) or asks for it (``"cache": true``); ``"cache": false`` bypasses. The
key hashes the org, the model, the messages and every generation parameter, so entries
are never shared across organizations. Two tiers: a bounded in-process LRU (hits in
microseconds) in front of a shared tier — Redis when configured, else the database — so
every instance benefits from every other's answers.

The org is a field of its own in the hashed JSON, so no two orgs' material is alike, and
the Redis keys (``<prefix>cache:<sha256>``) are apart from the limit counters' under the
same prefix (``org:...``, ``user:...``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import CachedResponse

logger = logging.getLogger(__name__)

# Body keys that do not change the answer.
_IGNORED = frozenset({"stream", "stream_options", "user", "metadata", "cache"})


def cache_key(org_id: str, model: str, body: dict[str, Any]) -> str:
    """A stable hash of everything that shapes the answer."""
    material = {k: v for k, v in body.items() if k not in _IGNORED}
    material["model"] = model
    material["org"] = org_id
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


class ResponseCache:
    """Stores ``chat.completion`` bodies by key for ``ttl`` seconds."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl: float,
        redis: Any = None,
        redis_prefix: str = "ahc:",
        local_entries: int = 10_000,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._redis = redis
        self._prefix = f"{redis_prefix}cache:"
        self._local: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._local_entries = local_entries
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: str) -> bytes | None:
        """The cached body, or None."""
        entry = self._local.get(key)
        if entry is not None:
            if entry[0] > time.monotonic():
                self._local.move_to_end(key)
                return entry[1]
            del self._local[key]
        content = await self._shared_get(key)
        if content is not None:
            self._remember(key, content)
        return content

    def put(self, key: str, org_id: str, content: bytes) -> None:
        """Store a body (the shared tier is written in the background)."""
        self._remember(key, content)
        task = asyncio.get_running_loop().create_task(self._shared_put(key, org_id, content))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _remember(self, key: str, content: bytes) -> None:
        self._local[key] = (time.monotonic() + self._ttl, content)
        self._local.move_to_end(key)
        while len(self._local) > self._local_entries:
            self._local.popitem(last=False)

    async def _shared_get(self, key: str) -> bytes | None:
        try:
            if self._redis is not None:
                value = await self._redis.get(self._prefix + key)
                return bytes(value) if value is not None else None
            async with self._sessions() as session:
                row = await session.get(CachedResponse, key)
                if row is None or row.expires_at <= datetime.now(UTC):
                    return None
                return row.content
        except Exception:  # a cache that cannot answer is a miss, never an error
            logger.warning("response cache read failed", exc_info=True)
            return None

    async def _shared_put(self, key: str, org_id: str, content: bytes) -> None:
        try:
            if self._redis is not None:
                await self._redis.set(self._prefix + key, content, ex=max(int(self._ttl), 1))
                return
            now = datetime.now(UTC)
            async with self._sessions() as session:
                await session.execute(
                    delete(CachedResponse).where(CachedResponse.expires_at <= now)
                )
                await session.merge(
                    CachedResponse(
                        key=key,
                        org_id=org_id,
                        content=content,
                        expires_at=now + timedelta(seconds=self._ttl),
                    )
                )
                await session.commit()
        except Exception:
            logger.warning("response cache write failed", exc_info=True)
