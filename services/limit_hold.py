"""The one way a chat request reserves against its limits (shared by both chat paths)."""

from __future__ import annotations

from accounting.events import CallContext
from api.schemas import ChatCompletionRequest
from auth.tokens import Principal
from limits.enforcer import LimitEnforcer
from providers.registry import ModelRoute


async def hold_limits(
    limits: LimitEnforcer,
    principal: Principal,
    context: CallContext,
    route: ModelRoute,
    request: ChatCompletionRequest,
) -> tuple[CallContext, int | None]:
    """Reserve against the caller's limits (429 when over); the reply cap to impose."""
    return await limits.hold(
        principal,
        context,
        model=route.name,
        prompt=lambda: " ".join(str(m.content or "") for m in request.messages),
        messages=len(request.messages),
        reply_limit=request.reply_limit,
    )
