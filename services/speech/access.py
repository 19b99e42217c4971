"""Which upstream serves a speech provider for an org, and holding a call on the limits."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from accounting.events import CallContext
from auth.tokens import Principal
from core.config import Settings
from core.errors import ApiError
from core.request_id import current_request_id
from providers.registry import ModelRoute, Upstream
from services.metering import MeteredCall, MeteringGate


class SpeechAccess:
    """The org's key (else the service's) per provider, and the metering gate's hold."""

    def __init__(self, settings: Settings, gate: MeteringGate) -> None:
        self.settings = settings
        self.gate = gate

    async def upstream(self, org_id: str, provider: str) -> Upstream | None:
        """``provider``'s upstream with the org's own key, else the service's; None: no key."""
        settings = self.settings
        own = await self.gate.provider_key(org_id, provider)
        if provider == "openai":
            service = settings.openai_api_key
            base_url = settings.openai_base_url
        else:
            service, base_url = settings.elevenlabs_api_key, settings.elevenlabs_base_url
        key = own or (service.get_secret_value() if service is not None else None)
        if key is None:
            return None
        organization = settings.openai_organization if provider == "openai" and not own else None
        return Upstream(provider, base_url.rstrip("/"), key, organization)

    async def hold(
        self,
        principal: Principal,
        flow: str,
        route: ModelRoute,
        cost: Decimal,
        *,
        audio_seconds: float = 0.0,
        characters: int = 0,
    ) -> MeteredCall:
        """Reserve one call of ``cost`` and its size against the caller's limits (429)."""
        context = CallContext.for_principal(principal, flow, request_id=current_request_id())
        return await self.gate.hold_priced(
            principal,
            context,
            route,
            lambda: cost,
            audio_seconds=audio_seconds,
            characters=characters,
        )


def error_code(exc: BaseException) -> str:
    """The usage event's error code for an exception ending a call."""
    if isinstance(exc, ApiError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return "client_disconnected"
    return "internal_error"
