"""FastAPI dependencies that turn the request's credentials into a :class:`Principal`.

API routes take the ``Authorization: Bearer`` header; runnable (LangServe) routes also
take the ``ahc_token`` cookie that the playground link sets (see ``auth.cookie``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from auth.failures import AuthFailureLimiter
from auth.tokens import Principal, TokenVerifier
from core.errors import ApiError
from core.request_id import bind_caller

COOKIE_NAME = "ahc_token"


def _verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "invalid_authorization",
            "the Authorization header must be 'Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def _authenticate(request: Request, token: str | None) -> Principal:
    if token is None:
        raise ApiError(
            401,
            "missing_token",
            "authentication required: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = _verifier(request).verify(token)
    request.state.principal = principal
    bind_caller(principal.org_id, principal.user_id)  # the request's log lines name them
    return principal


async def _limited(request: Request, read_token: Callable[[], str | None]) -> Principal:
    """Authenticate, counting rejected credentials per client address (``auth.failures``).

    A missing token is not counted (a client without one is not guessing); a malformed,
    forged or expired one is, and past the limit it is answered 429 instead of 401. Valid
    tokens pay nothing for this.
    """
    try:
        return _authenticate(request, read_token())
    except ApiError as exc:
        limiter: AuthFailureLimiter | None = getattr(request.app.state, "auth_failures", None)
        if limiter is None or exc.status_code != 401 or exc.code == "missing_token":
            raise
        client = request.client.host if request.client else "unknown"
        if (wait := await limiter.record_failure(client)) > 0:
            raise ApiError(
                429,
                "too_many_auth_failures",
                "too many rejected credentials from this address; retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            ) from exc
        raise


async def current_principal(request: Request) -> Principal:
    """Authenticate an API request by its bearer token.

    Async on purpose: FastAPI runs sync dependencies in a thread pool, a thread hop per
    request that cost ~10% of the relay's CPU.
    """
    return await _limited(request, lambda: _bearer(request))


async def runnable_principal(request: Request) -> Principal:
    """Authenticate a runnable request: bearer token, else the playground cookie."""
    return await _limited(request, lambda: _bearer(request) or request.cookies.get(COOKIE_NAME))


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """Only an organization admin may pass."""
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "this action needs the admin role")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
