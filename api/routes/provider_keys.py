"""Bring your own key: ``PUT|DELETE /api/provider-keys/{provider}`` (admins), ``GET`` (masked)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Response

from api.deps import ServicesDep
from api.schemas import ProviderKeyIn, ProviderKeyPublic, ProviderKeysPublic
from auth.deps import AdminPrincipal, CurrentPrincipal
from core.errors import ApiError
from db.models import ProviderKey

router = APIRouter(prefix="/provider-keys", tags=["provider-keys"])

Provider = Annotated[Literal["openai", "elevenlabs"], Path(description="openai or elevenlabs")]


def _public(row: ProviderKey) -> ProviderKeyPublic:
    return ProviderKeyPublic(
        provider=row.provider,
        api_key=f"...{row.last4}",
        last4=row.last4,
        updated_at=row.updated_at,
    )


@router.get("", response_model=ProviderKeysPublic, operation_id="provider-keys-list")
async def list_keys(principal: CurrentPrincipal, services: ServicesDep) -> ProviderKeysPublic:
    """The org's stored keys, masked to their last four characters."""
    rows = await services.provider_keys.list(principal.org_id)
    return ProviderKeysPublic(data=[_public(r) for r in rows])


@router.put("/{provider}", response_model=ProviderKeyPublic, operation_id="provider-keys-put")
async def put_key(
    provider: Provider, body: ProviderKeyIn, principal: AdminPrincipal, services: ServicesDep
) -> ProviderKeyPublic:
    """Store the org's own key: its calls to ``provider`` use it from now on."""
    row = await services.provider_keys.put(
        principal.org_id,
        provider,
        body.api_key.get_secret_value(),
        updated_by=principal.user_id,
    )
    return _public(row)


@router.delete("/{provider}", status_code=204, operation_id="provider-keys-delete")
async def delete_key(
    provider: Provider, principal: AdminPrincipal, services: ServicesDep
) -> Response:
    """Remove the org's key: its calls go back to the service's key."""
    if not await services.provider_keys.delete(principal.org_id, provider):
        raise ApiError(404, "key_not_found", f"no {provider} key is stored for this organization")
    return Response(status_code=204)
