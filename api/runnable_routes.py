"""The LangServe routes (``/runnables/*``): the only module that imports LangServe.

``add_runnable_routes(app, runnables)`` registers every runnable from one list
(``RUNNABLE_ROUTES``): its path, the config the server builds for each call, and whether
its runs hold the thread's turn lock. Runnables and graphs never import LangServe.

The routes are added to a router of their own and then included: LangServe's ``add_routes``
registers a start-up hook (a banner print) on what it is given, and an app with startup
hooks cannot have its lifespan merged by LangGraph's server (``langgraph dev`` mounts this
app, see ``langgraph.json``); the hook is dropped before the router is included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from fastapi import APIRouter, Depends, FastAPI, Request
from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables import RunnableConfig
from langserve import add_routes
from pydantic import ValidationError

from api.runnable_turns import served
from auth.deps import runnable_principal
from core.errors import ApiError
from db.models import RAG_THREAD_PREFIX
from services.runnable_config import (
    PromptConfigurable,
    RunnableConfigurable,
    prompt_runnable_config,
    retriever_config,
    runnable_config,
)
from services.voice import VOICE_ROUTE

ConfigModifier = Callable[[dict[str, Any], Request], Awaitable[dict[str, Any]]]
_SERVER_CONFIG = "__server_config"
"""Where a run's server-set callbacks, tags and metadata also travel: LangServe's batch
endpoint keeps only ``configurable`` of the config the modifier built
(``_restore_server_config``)."""
_CARRIED = ("callbacks", "tags", "metadata")


@dataclass(frozen=True, slots=True)
class Runnables:
    """What the routes serve (built by ``server.create_app``)."""

    chat_graph: Any
    completion: Any
    rag_graph: Any
    retriever: Any
    prompt: Any
    voice: Any


async def _client_configurable(
    config: dict[str, Any],
    request: Request,
    schema: type[RunnableConfigurable] = RunnableConfigurable,
) -> Any:
    """The client's configurable keys, validated (against ``schema``).

    A runnable without a config schema (the completion chain) gets its ``configurable``
    dropped by LangServe's validation, so it is read from the request body here.
    """
    configurable = dict(config.get("configurable") or {})
    if not configurable and request.method == "POST":
        try:
            body = await request.json()
        except ValueError:
            body = None
        raw = body.get("config") if isinstance(body, dict) else None
        if isinstance(raw, dict) and isinstance(raw.get("configurable"), dict):
            configurable = raw["configurable"]
    try:
        return schema.model_validate(configurable)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(422, "invalid_config", f"configurable.{where}: {first['msg']}") from exc


def _with_server_config(modifier: ConfigModifier) -> ConfigModifier:
    """Copy the modifier's callbacks, tags and metadata into ``configurable`` (for batches).

    Accounting rides on the callbacks, tracing's caller on the tags and metadata.
    """

    async def modify(config: dict[str, Any], request: Request) -> dict[str, Any]:
        modified = await modifier(config, request)
        carried = {key: modified[key] for key in _CARRIED if modified.get(key)}
        if carried:
            modified["configurable"] = {
                **(modified.get("configurable") or {}),
                _SERVER_CONFIG: carried,
            }
        return modified

    return modify


def _restore_server_config(config: RunnableConfig) -> RunnableConfig:
    """The server-set callbacks, tags and metadata a run's config is missing.

    LangServe's ``/batch`` projects the modifier's config onto ``configurable`` again,
    dropping the rest, so a batch's model calls would go unaccounted and its traces lose
    the caller; ``/invoke`` and the streams keep them (then nothing is added twice).
    """
    carried = (config.get("configurable") or {}).get(_SERVER_CONFIG) or {}
    restored: dict[str, Any] = {}
    present = config.get("callbacks")
    current = present.handlers if isinstance(present, BaseCallbackManager) else list(present or [])
    if missing := [h for h in carried.get("callbacks", ()) if h not in current]:
        restored["callbacks"] = missing
    if tags := [t for t in carried.get("tags", ()) if t not in (config.get("tags") or [])]:
        restored["tags"] = tags
    metadata = config.get("metadata") or {}
    if extra := {k: v for k, v in carried.get("metadata", {}).items() if k not in metadata}:
        restored["metadata"] = extra
    return cast(RunnableConfig, restored)


def _config_modifier(
    *, flow: str, with_threads: bool, require_thread: bool = True, thread_prefix: str = ""
) -> ConfigModifier:
    """Build each call's config on the server (``services.runnable_config``)."""

    async def modify(config: dict[str, Any], request: Request) -> dict[str, Any]:
        body = await request.json() if request.method == "POST" else {}
        return await runnable_config(
            request.app.state.services,
            request.state.principal,
            config,
            await _client_configurable(config, request),
            body.get("input") if isinstance(body, dict) else None,
            flow=flow,
            with_threads=with_threads,
            require_thread=require_thread,
            thread_prefix=thread_prefix,
        )

    return modify


def _prompt_config_modifier(*, flow: str) -> ConfigModifier:
    """The prompt playground's config: the caller's template version, model and params."""

    async def modify(config: dict[str, Any], request: Request) -> dict[str, Any]:
        body = await request.json() if request.method == "POST" else {}
        return await prompt_runnable_config(
            request.app.state.services,
            request.state.principal,
            config,
            await _client_configurable(config, request, PromptConfigurable),
            body.get("input") if isinstance(body, dict) else None,
            flow=flow,
        )

    return modify


def _retriever_config_modifier(*, flow: str) -> ConfigModifier:
    """The caller and the search options, for a runnable that calls no model."""

    async def modify(config: dict[str, Any], request: Request) -> dict[str, Any]:
        client = await _client_configurable(config, request)
        return retriever_config(request.state.principal, config, client, flow=flow)

    return modify


MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a LangServe body may have (inputs are messages and
dicts a few levels deep; thousands of levels crash parsers and validators with
RecursionError)."""


async def _json_object_body(request: Request) -> None:
    """LangServe answers 500 to bodies it did not expect: answer 422 first.

    The body must be a JSON object, nested at most ``MAX_JSON_DEPTH`` deep, with object
    ``config``/``kwargs``; a ``/batch`` body needs an ``inputs`` list and, when ``config``
    is a list, one object per input. Starlette caches the parsed body on the request, so
    LangServe does not read it twice.
    """
    if request.method != "POST":
        return
    try:
        body = await request.json()
    except RecursionError as exc:
        raise ApiError(422, "invalid_request", _too_deep()) from exc
    except ValueError as exc:
        raise ApiError(422, "invalid_request", "the body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", "the body must be a JSON object")
    if _too_nested(body, MAX_JSON_DEPTH):
        raise ApiError(422, "invalid_request", _too_deep())
    for key in ("config", "kwargs"):
        if key in body and not isinstance(body[key], dict | list):
            raise ApiError(422, "invalid_request", f"'{key}' must be an object")
    if request.url.path.endswith("/batch"):
        _check_batch_body(body)


def _check_batch_body(body: dict[str, Any]) -> None:
    """``inputs`` is a list; a list ``config`` holds one object per input."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise ApiError(422, "invalid_request", "'inputs' must be a list (one item per run)")
    config = body.get("config")
    if isinstance(config, list):
        if len(config) != len(inputs):
            raise ApiError(
                422,
                "invalid_request",
                f"'config' as a list needs one object per input ({len(inputs)}), got {len(config)}",
            )
        if not all(isinstance(item, dict) for item in config):
            raise ApiError(422, "invalid_request", "each item of 'config' must be an object")


def _too_nested(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays/objects deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _too_deep() -> str:
    return f"the body nests arrays or objects deeper than {MAX_JSON_DEPTH} levels"


@dataclass(frozen=True, slots=True)
class RunnableRoute:
    """One LangServe route: where, what (from :class:`Runnables`), and its server config."""

    path: str
    runnable: Callable[[Runnables], Any]
    modifier: Callable[[], ConfigModifier]
    turns: bool = False
    """Runs of one thread hold its turn lock (``api.runnable_turns``)."""


RUNNABLE_ROUTES: tuple[RunnableRoute, ...] = (
    RunnableRoute(
        "/runnables/chat",
        lambda r: r.chat_graph,
        lambda: _config_modifier(flow="runnables.chat", with_threads=True),
        turns=True,
    ),
    RunnableRoute(
        "/runnables/completion",
        lambda r: r.completion,
        lambda: _config_modifier(flow="runnables.completion", with_threads=False),
    ),
    RunnableRoute(
        "/runnables/rag",
        lambda r: r.rag_graph,
        lambda: _config_modifier(
            flow="runnables.rag",
            with_threads=True,
            require_thread=False,  # a one-off key when the client names no thread
            thread_prefix=RAG_THREAD_PREFIX,
        ),
        turns=True,
    ),
    RunnableRoute(
        "/runnables/retriever",
        lambda r: r.retriever,
        lambda: _retriever_config_modifier(flow="runnables.retriever"),
    ),
    RunnableRoute(
        "/runnables/prompt",
        lambda r: r.prompt,
        lambda: _prompt_config_modifier(flow="runnables.prompt"),
    ),
    RunnableRoute(
        "/runnables/voice",
        lambda r: r.voice,
        lambda: _config_modifier(flow=VOICE_ROUTE, with_threads=True),
        turns=True,
    ),
)
"""Every LangServe route of the service, in one place."""


def let_streams_finish_on_shutdown() -> None:
    """Stop sse-starlette (LangServe's SSE) from ending streams the moment SIGTERM arrives.

    By default it ends every LangServe stream at the signal, mid-answer and without its
    ``end`` event; without that a stream finishes like any request, within uvicorn's graceful
    shutdown (``AHC_SHUTDOWN_GRACE_SECONDS``), and is cancelled only after it.
    """
    from sse_starlette.sse import AppStatus

    AppStatus.disable_automatic_graceful_drain()


def add_runnable_routes(app: FastAPI, runnables: Runnables) -> None:
    """Expose the runnables under ``/runnables`` (invoke, batch, stream, playground...)."""
    let_streams_finish_on_shutdown()
    router = APIRouter()
    auth = [Depends(runnable_principal), Depends(_json_object_body)]
    for route in RUNNABLE_ROUTES:
        add_routes(
            router,
            served(
                route.runnable(runnables),
                locks_of=(lambda: app.state.services.turn_locks) if route.turns else None,
                config_factories=[_restore_server_config],
            ),
            path=route.path,
            dependencies=auth,
            per_req_config_modifier=_with_server_config(route.modifier()),
        )
    # LangServe's banner hook: never run under the app's lifespan, and it stops LangGraph's
    # server from merging that lifespan with its own.
    router.on_startup.clear()
    app.include_router(router)
