"""Security headers on every response (pure ASGI, so streams and errors get them too).

``nosniff`` stops browsers from guessing a JSON error into HTML; the service's pages may
not be framed by other sites (clickjacking), except that LangServe's playground may be
framed by its own origin; no URL (which may carry a thread id) leaks through ``Referer``.
A header the route set itself wins.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_NO_FRAMING = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)
_SAME_ORIGIN_FRAMING = (
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"content-security-policy", b"frame-ancestors 'self'"),
)


class SecurityHeadersMiddleware:
    """Adds the headers above to each HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap ``send`` to add the headers to the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        framing = _SAME_ORIGIN_FRAMING if "/playground" in scope["path"] else _NO_FRAMING
        extra = (*_COMMON, *framing)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in extra if name not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
