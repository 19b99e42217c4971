"""``GET /api/usage`` (totals and groups) and ``GET /api/usage/export`` (CSV)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import ServicesDep
from api.schemas import UsageReport
from auth.deps import CurrentPrincipal
from core.errors import ApiError
from services import usage

router = APIRouter(prefix="/usage", tags=["usage"])

From = Annotated[
    datetime | None,
    Query(
        alias="from",
        description="Start (inclusive), ISO date or datetime; default: "
        "the first day of the current month (UTC).",
    ),
]
To = Annotated[
    datetime | None, Query(description="End (exclusive), ISO date or datetime; default: now.")
]


def _period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    start = start or now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = end or now
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    if end <= start:
        raise ApiError(422, "invalid_period", "'to' must be after 'from'")
    return start.astimezone(UTC), end.astimezone(UTC)


@router.get("", response_model=UsageReport, operation_id="usage-report")
async def usage_report(
    principal: CurrentPrincipal,
    services: ServicesDep,
    start: From = None,
    to: To = None,
    group_by: Annotated[usage.GroupBy | None, Query(description="How to group.")] = None,
) -> UsageReport:
    """Token, speech, cost and error totals; a member sees their own, an admin the whole org.

    The speech price table in force comes with it (speech is priced by the minute and the
    character, not by the token).
    """
    begin, end = _period(start, to)
    report = await usage.summarize(
        services.sessions, principal, start=begin, end=end, group_by=group_by
    )
    return UsageReport.model_validate({**report, "speech_prices": services.speech.prices.table()})


@router.get(
    "/export",
    operation_id="usage-export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "One row per usage event."}},
)
async def usage_export(
    principal: CurrentPrincipal,
    services: ServicesDep,
    start: From = None,
    to: To = None,
    format: Annotated[Literal["csv"], Query(description="Only csv.")] = "csv",
) -> StreamingResponse:
    """Every usage event of the period, every recorded field as a column."""
    begin, end = _period(start, to)
    rows = usage.export_csv(services.sessions, principal, start=begin, end=end)
    filename = f"usage-{begin:%Y%m%d}-{end:%Y%m%d}.csv"
    return StreamingResponse(
        rows,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
