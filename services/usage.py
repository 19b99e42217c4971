"""Usage reports: totals and groups over ``ahc_usage_events``, and the raw CSV export.

A member sees their own usage; an admin sees the whole organization. Aggregation runs in
SQL (one query for totals, one for groups), so reports stay cheap on large tables.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth.tokens import Principal
from db.models import UsageEvent

GroupBy = Literal["model", "user", "day", "route"]

EXPORT_COLUMNS = [c.name for c in UsageEvent.__table__.columns]


def _aggregates() -> list[Any]:
    return [
        func.count().label("requests"),
        func.coalesce(func.sum(UsageEvent.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(UsageEvent.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(UsageEvent.total_tokens), 0).label("total_tokens"),
        func.coalesce(func.sum(UsageEvent.cost_usd), 0).label("cost_usd"),
        func.coalesce(func.sum(UsageEvent.audio_seconds), 0).label("audio_seconds"),
        func.coalesce(func.sum(UsageEvent.tts_characters), 0).label("tts_characters"),
        func.coalesce(func.sum(case((UsageEvent.status == "error", 1), else_=0)), 0).label(
            "errors"
        ),
        func.coalesce(func.sum(case((UsageEvent.cached.is_(True), 1), else_=0)), 0).label(
            "cache_hits"
        ),
    ]


def _scope(principal: Principal, start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    """The caller's rows: the org's for an admin, their own for a member."""
    conditions = [
        UsageEvent.org_id == principal.org_id,
        UsageEvent.created_at >= start,
        UsageEvent.created_at < end,
    ]
    if not principal.is_admin:
        conditions.append(UsageEvent.user_id == principal.user_id)
    return conditions


def _group_key(group_by: GroupBy, dialect: str) -> Any:
    if group_by == "model":
        return UsageEvent.model
    if group_by == "user":
        return UsageEvent.user_id
    if group_by == "route":
        return UsageEvent.route
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", UsageEvent.created_at), "YYYY-MM-DD")
    return func.substr(UsageEvent.created_at, 1, 10)  # SQLite stores UTC ISO text


def _numbers(row: Any) -> dict[str, Any]:
    return {
        "requests": int(row.requests),
        "prompt_tokens": int(row.prompt_tokens),
        "completion_tokens": int(row.completion_tokens),
        "total_tokens": int(row.total_tokens),
        "cost_usd": round(float(row.cost_usd), 8),
        "audio_seconds": round(float(row.audio_seconds), 3),
        "tts_characters": int(row.tts_characters),
        "errors": int(row.errors),
        "cache_hits": int(row.cache_hits),
    }


async def summarize(
    sessions: async_sessionmaker[AsyncSession],
    principal: Principal,
    *,
    start: datetime,
    end: datetime,
    group_by: GroupBy | None,
) -> dict[str, Any]:
    """Totals and (optionally) groups of the caller's usage in ``[start, end)``."""
    where = _scope(principal, start, end)
    async with sessions() as session:
        totals = (await session.execute(select(*_aggregates()).where(*where))).one()
        groups: list[dict[str, Any]] = []
        if group_by is not None:
            key = _group_key(group_by, session.get_bind().dialect.name).label("key")
            rows = await session.execute(
                select(key, *_aggregates()).where(*where).group_by(key).order_by(key)
            )
            groups = [{"key": str(row.key), **_numbers(row)} for row in rows]
    return {"from": start, "to": end, "totals": _numbers(totals), "groups": groups}


async def export_csv(
    sessions: async_sessionmaker[AsyncSession],
    principal: Principal,
    *,
    start: datetime,
    end: datetime,
    page_size: int = 5000,
) -> AsyncIterator[str]:
    """One CSV row per event, every recorded field a column; streamed page by page."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    yield _drain(buffer)
    where = _scope(principal, start, end)
    after: tuple[datetime, str] | None = None
    while True:
        query = select(UsageEvent).where(*where)
        if after is not None:
            query = query.where(
                (UsageEvent.created_at > after[0])
                | ((UsageEvent.created_at == after[0]) & (UsageEvent.id > after[1]))
            )
        query = query.order_by(UsageEvent.created_at, UsageEvent.id).limit(page_size)
        async with sessions() as session:
            events = (await session.scalars(query)).all()
        if not events:
            return
        for event in events:
            writer.writerow(_csv_value(getattr(event, column)) for column in EXPORT_COLUMNS)
        yield _drain(buffer)
        after = (events[-1].created_at, events[-1].id)


def _csv_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else value


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
