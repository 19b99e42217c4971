"""The limits table, with a short in-process cache (limits are read on every call)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.base import utcnow
from db.models import OrgLimit
from db.upsert import upsert


@dataclass(frozen=True, slots=True)
class LimitValues:
    """One set of limits; ``None`` is unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    cost_usd_per_month: Decimal | None = None
    audio_seconds_per_month: int | None = None
    tts_characters_per_month: int | None = None

    @classmethod
    def of(cls, row: OrgLimit) -> LimitValues | None:
        """The row's limits, ``None`` when every one is unlimited."""
        values = cls(
            requests_per_minute=row.requests_per_minute,
            tokens_per_minute=row.tokens_per_minute,
            tokens_per_day=row.tokens_per_day,
            tokens_per_month=row.tokens_per_month,
            cost_usd_per_month=row.cost_usd_per_month,
            audio_seconds_per_month=row.audio_seconds_per_month,
            tts_characters_per_month=row.tts_characters_per_month,
        )
        return None if values == cls() else values


class LimitStore:
    """Reads and writes ``ahc_limits``; reads are cached for ``ttl`` seconds per org.

    Another instance sees a change within ``ttl`` (this one at once).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl: float = 5.0) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._cache: dict[str, tuple[float, dict[str, LimitValues]]] = {}

    async def get(self, org_id: str, user_id: str) -> tuple[LimitValues | None, LimitValues | None]:
        """The org's limits and the user's."""
        cached = self._cache.get(org_id)
        if cached is None or cached[0] < time.monotonic():
            rows = await self.list(org_id)
            limits = {r.user_id: v for r in rows if (v := LimitValues.of(r)) is not None}
            cached = (time.monotonic() + self._ttl, limits)
            self._cache[org_id] = cached
        return cached[1].get(""), cached[1].get(user_id)

    async def list(self, org_id: str) -> Sequence[OrgLimit]:
        """Every limits row of the org (uncached)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(OrgLimit).where(OrgLimit.org_id == org_id).order_by(OrgLimit.user_id)
            )
            return rows.all()

    async def put(
        self, org_id: str, user_id: str, values: LimitValues, *, updated_by: str
    ) -> OrgLimit:
        """Replace the limits of the org (``user_id`` empty) or of one of its users.

        One upsert: concurrent first writes all succeed, the last one's values stay.
        """
        async with self._sessions() as session:
            row = await upsert(
                session,
                OrgLimit,
                {
                    "org_id": org_id,
                    "user_id": user_id,
                    "requests_per_minute": values.requests_per_minute,
                    "tokens_per_minute": values.tokens_per_minute,
                    "tokens_per_day": values.tokens_per_day,
                    "tokens_per_month": values.tokens_per_month,
                    "cost_usd_per_month": values.cost_usd_per_month,
                    "audio_seconds_per_month": values.audio_seconds_per_month,
                    "tts_characters_per_month": values.tts_characters_per_month,
                    "updated_by": updated_by,
                    "updated_at": utcnow(),
                },
                key=("org_id", "user_id"),
            )
            await session.commit()
        self._cache.pop(org_id, None)
        return row
