"""LangGraph's server authenticated by the service's JWTs (``langgraph.json``: ``auth.path``).

``langgraph dev`` serves the graphs' threads, runs and assistants beside the service's
app. This handler makes them the service's: the same bearer tokens as the REST API
(HS256 or RS256, the same claims, the same 401 messages, ``auth.tokens.TokenVerifier``),
and every resource is its owner's, the token's org and user:

- a thread, run, cron or assistant is stamped with ``metadata.owner`` when created, and
  reads, searches, updates and deletes see only the caller's (another org's or user's
  thread is a 404, as if it did not exist);
- the graphs' own assistants (``created_by: system``) are visible to every caller;
- the store's namespaces start with the caller's owner key;
- a run's input is checked before it is queued (an empty message list is a 422, not a
  model call).

The org of a run is never read from the request: the graphs take it from this handler's
user (``services.langgraph_server``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph_sdk import Auth

from auth.tokens import TokenVerifier
from core.config import Settings
from core.errors import ApiError
from core.keys import scoped_key

auth = Auth()
OWNER = "owner"
"""The metadata key naming a resource's owner (``scoped_key(org_id, user_id)``)."""
_SYSTEM = {"created_by": "system"}
_verifiers: list[TokenVerifier] = []
_lock = asyncio.Lock()


async def _verifier() -> TokenVerifier:
    """The verifier for the environment's settings (built once, off the event loop).

    Building it may read or create the generated secret in the data directory.
    """
    if not _verifiers:
        async with _lock:
            if not _verifiers:
                _verifiers.append(await asyncio.to_thread(lambda: TokenVerifier(Settings())))
    return _verifiers[0]


def _unauthorized(message: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(
        status_code=401, detail=message, headers={"WWW-Authenticate": "Bearer"}
    )


@auth.authenticate
async def authenticate(authorization: str | None) -> dict[str, Any]:
    """The caller of a LangGraph request, from ``Authorization: Bearer <JWT>``."""
    if authorization is None:
        raise _unauthorized("authentication required: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <token>'")
    try:
        principal = (await _verifier()).verify(token.strip())
    except ApiError as exc:
        raise _unauthorized(exc.message) from exc
    return {
        "identity": scoped_key(principal.org_id, principal.user_id),
        "display_name": principal.user_id,
        "org_id": principal.org_id,
        "user_id": principal.user_id,
        "role": principal.role,
        "is_authenticated": True,
        "permissions": [],
    }


@auth.on
async def owned(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
    """Every thread, run, cron and assistant is its owner's; created ones are stamped."""
    owner = ctx.user.identity
    if ctx.action in ("create", "update", "create_run") and isinstance(value, dict):
        metadata = value.get("metadata")
        if not isinstance(metadata, dict):
            metadata = value["metadata"] = {}
        metadata[OWNER] = owner
        if ctx.resource == "assistants":
            metadata["created_by"] = owner  # only the graphs' own assistants are "system"
        if ctx.action == "create_run":
            _check_input((value.get("kwargs") or {}).get("input"))
    if ctx.resource == "assistants" and ctx.action in ("read", "search"):
        # (The SDK's filter type predates `$or`, which the server supports.)
        return {"$or": [{OWNER: owner}, _SYSTEM]}  # type: ignore[return-value]
    return {OWNER: owner}


@auth.on.store()
async def own_namespace(ctx: Auth.types.AuthContext, value: Any) -> None:
    """The store's items live under the caller's owner key (first namespace part)."""
    namespace = tuple(value.get("namespace") or ())
    if not namespace or namespace[0] != ctx.user.identity:
        raise Auth.exceptions.HTTPException(
            status_code=403, detail="store namespaces must start with the caller's identity"
        )


def _check_input(run_input: Any) -> None:
    """A run's input names something to answer: 422 before the run, not a model call."""
    if not isinstance(run_input, dict):
        return  # a resumed run (None) or a command: the graph's own checks apply
    if "messages" in run_input and "question" not in run_input:
        messages = run_input["messages"]
        if not isinstance(messages, list) or not messages:
            raise Auth.exceptions.HTTPException(
                status_code=422,
                detail="input.messages must be a non-empty list of messages, "
                "e.g. [{'role': 'user', 'content': 'Hi'}]",
            )
    if "question" in run_input:
        question = run_input["question"]
        if not isinstance(question, str) or not question.strip():
            raise Auth.exceptions.HTTPException(
                status_code=422, detail="input.question must be a non-empty string"
            )
