"""``x-request-id`` on every response, and in every log line of the request (with its caller).

Pure ASGI (no BaseHTTPMiddleware): a gateway pays for every microsecond. A client's own
``x-request-id`` (from ai-helper-back) is kept when it is sane, so one id follows a call
across both services; otherwise one is generated.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
_VALID = re.compile(rb"^[A-Za-z0-9._:\-]{1,64}$")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


@dataclass(slots=True)
class Caller:
    """Who the request is for, once authentication knows (for the log lines)."""

    org_id: str | None = None
    user_id: str | None = None


caller_var: ContextVar[Caller | None] = ContextVar("caller", default=None)
"""One mutable holder per request: authentication runs in a dependency, whose context
changes would not reach the rest of the request; filling the shared holder does."""


def current_request_id() -> str | None:
    """The id of the request being served (``None`` outside a request)."""
    return request_id_var.get()


def current_caller() -> Caller | None:
    """The caller of the request being served (``None`` outside a request)."""
    return caller_var.get()


def bind_caller(org_id: str, user_id: str) -> None:
    """Name the authenticated caller of the current request in its log lines."""
    caller = caller_var.get()
    if caller is not None:
        caller.org_id, caller.user_id = org_id, user_id


class RequestIdMiddleware:
    """Assigns the request id, exposes it to the app and returns it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Tag the request and its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == HEADER), None)
        rid = incoming.decode() if incoming and _VALID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        caller_token = caller_var.set(Caller())
        header = (HEADER, rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            caller_var.reset(caller_token)
            request_id_var.reset(token)
