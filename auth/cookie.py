"""Playground links: ``/runnables/...?token=<JWT>`` becomes an http-only cookie.

The LangServe playground derives its API URL from the page address, so a token left in
the query string would break its calls and leak into browser history. This ASGI
middleware accepts the token once, sets the ``ahc_token`` cookie and answers 303 to the
same URL without it. It is pure ASGI (no BaseHTTPMiddleware) so other requests pay one
string check.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from auth.deps import COOKIE_NAME
from auth.tokens import TokenVerifier
from core.errors import ApiError, error_response


class TokenCookieMiddleware:
    """Swap a ``token`` query parameter on runnable paths for the session cookie."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier,
        prefix: str = "/runnables",
        secure: bool | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.prefix = prefix
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Redirect a runnable URL carrying ``token=``; pass everything else through."""
        if (
            scope["type"] != "http"
            or not scope["path"].startswith(self.prefix)
            or b"token=" not in scope.get("query_string", b"")
        ):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        token = next((value for key, value in query if key == "token"), None)
        if token is None:
            await self.app(scope, receive, send)
            return
        try:
            self.verifier.verify(token)
        except ApiError as error:
            await error_response(error)(scope, receive, send)
            return
        rest = urlencode([(k, v) for k, v in query if k != "token"])
        location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
        secure = self.secure if self.secure is not None else scope.get("scheme") == "https"
        response = RedirectResponse(location, status_code=303)
        response.set_cookie(
            COOKIE_NAME, token, httponly=True, samesite="lax", secure=secure, path="/"
        )
        await response(scope, receive, send)
