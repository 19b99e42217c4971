"""The pure-ASGI middleware that ends what a request's turns left open (``response_scope``).

Pure ASGI (not ``BaseHTTPMiddleware``): it wraps the whole response, streamed bodies
included, and adds no task or buffering to the request path.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from services.turn_locks import response_scope


class TurnCleanupMiddleware:
    """Runs the cleanups registered with ``services.turn_locks.after_response``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request inside its cleanup scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with response_scope():
            await self.app(scope, receive, send)
