"""``GET /api/limits`` and ``PUT /api/limits`` (admins): the org's and its users' limits."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ServicesDep
from api.schemas import LimitsPublic, LimitsUpdate, LimitsView
from auth.deps import AdminPrincipal, CurrentPrincipal
from db.models import OrgLimit
from limits.store import LimitValues

router = APIRouter(prefix="/limits", tags=["limits"])


def _public(row: OrgLimit) -> LimitsView:
    return LimitsView(
        user_id=row.user_id or None,
        requests_per_minute=row.requests_per_minute,
        tokens_per_minute=row.tokens_per_minute,
        tokens_per_day=row.tokens_per_day,
        tokens_per_month=row.tokens_per_month,
        cost_usd_per_month=float(row.cost_usd_per_month)
        if row.cost_usd_per_month is not None
        else None,
        audio_seconds_per_month=row.audio_seconds_per_month,
        tts_characters_per_month=row.tts_characters_per_month,
        updated_at=row.updated_at,
    )


@router.get("", response_model=LimitsPublic, operation_id="limits-get")
async def get_limits(principal: CurrentPrincipal, services: ServicesDep) -> LimitsPublic:
    """The org's limits and per-user limits (a member sees the org's and their own)."""
    rows = await services.limits.store.list(principal.org_id)
    visible = [r for r in rows if principal.is_admin or r.user_id in ("", principal.user_id)]
    return LimitsPublic(data=[_public(r) for r in visible])


@router.put("", response_model=LimitsView, operation_id="limits-put")
async def put_limits(
    body: LimitsUpdate, principal: AdminPrincipal, services: ServicesDep
) -> LimitsView:
    """Set the org's limits, or one user's with ``user_id``; ``null`` means unlimited."""
    values = LimitValues(**body.model_dump(exclude={"user_id"}))
    row = await services.limits.store.put(
        principal.org_id, body.user_id or "", values, updated_by=principal.user_id
    )
    return _public(row)
