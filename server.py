"""The ASGI app: ``create_app(settings)`` wires settings, auth, the REST API and LangServe.

A request goes: ``TokenCookieMiddleware`` (playground links) → route → ``auth.deps``
(JWT → Principal) → ``services`` (chat, threads) → ``providers`` (relay or ChatOpenAI) →
the model, and back. LangServe is confined to this module (``_add_runnable_routes``):
runnables and graphs never import it.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langserve import add_routes
from pydantic import BaseModel, ValidationError

from api.router import router as api_router
from api.routes import health, metrics
from api.runnable_turns import serialize_turns
from api.turn_cleanup import TurnCleanupMiddleware
from auth.cookie import TokenCookieMiddleware
from auth.deps import runnable_principal
from auth.tokens import TokenVerifier
from chains.completion import build_completion_chain
from chains.prompt_playground import build_prompt_playground
from core.body_limit import BodySizeLimitMiddleware
from core.config import Settings
from core.errors import ApiError, install_error_handlers
from core.logging import configure_logging
from core.metrics import MetricsMiddleware
from core.request_id import RequestIdMiddleware
from core.security_headers import SecurityHeadersMiddleware
from db.models import RAG_THREAD_PREFIX
from graphs.chat.graph import build_chat_graph
from graphs.rag.graph import build_rag_graph, build_retriever
from providers.registry import ModelRegistry
from services.container import open_services
from services.knowledge_query import knowledge_search
from services.runnable_config import (
    PromptConfigurable,
    RunnableConfigurable,
    prompt_runnable_config,
    retriever_config,
    runnable_config,
)

logger = logging.getLogger(__name__)

ConfigModifier = Callable[[dict[str, Any], Request], Awaitable[dict[str, Any]]]
_SERVER_CONFIG = "__server_config"
"""Where a run's server-set callbacks, tags and metadata also travel: LangServe's batch
endpoint keeps only ``configurable`` of the config the modifier built
(``_keep_server_config``)."""
_CARRIED = ("callbacks", "tags", "metadata")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; resources (DB, checkpointer, local model) start in its lifespan."""
    settings = settings or Settings()
    configure_logging(settings.log_level, json_logs=settings.json_logs)
    _let_streams_finish_on_shutdown()
    registry = ModelRegistry(settings)
    chat_graph = build_chat_graph(
        llm_factory=registry.chat_model,
        context_window=lambda model: settings.context_window(model or registry.default_model),
        reply_reserve=settings.memory_reply_reserve_tokens,
    )
    # The knowledge service is built in the lifespan: the search looks it up at call time.
    search = knowledge_search(lambda: app.state.services.knowledge)
    rag_graph = build_rag_graph(llm_factory=registry.chat_model, search=search)

    async def resolve_template(
        org_id: str, name: str, version: int | None, label: str | None
    ) -> Any:
        templates = app.state.services.prompt_templates
        return await templates.resolve(org_id, name, version=version, label=label)

    prompt_playground = build_prompt_playground(
        resolver=resolve_template,
        llm_factory=registry.chat_model,
        models=registry.names(),
        default_model=registry.default_model,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(
            settings, registry=registry, chat_graph=chat_graph, rag_graph=rag_graph
        ) as services:
            app.state.services = services
            app.state.auth_failures = services.auth_failures  # read by auth.deps
            # Everything imported and built so far lives as long as the process: move it out
            # of the garbage collector's sight, so full collections stop scanning LangChain's
            # large heap under load (measured: p95 spikes of ~250 ms at concurrency 50).
            gc.collect()
            gc.freeze()
            yield

    app = FastAPI(
        title="ai-helper-core",
        version="0.1.0",
        summary="OpenAI-compatible LLM gateway with per-org accounting, RAG and chat memory.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.token_verifier = verifier = TokenVerifier(settings)
    install_error_handlers(app)
    app.add_middleware(TokenCookieMiddleware, verifier=verifier, secure=settings.cookie_secure)
    app.add_middleware(TurnCleanupMiddleware)  # ends the turns a response left open
    if settings.metrics_token is not None:  # nobody can scrape otherwise: spare the hot path
        app.add_middleware(MetricsMiddleware)
    # 413 before a non-multipart body is read whole (uploads keep their own caps).
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # closed by default: no CORS headers, browsers refuse
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-request-id", "retry-after"],
        )
    app.add_middleware(RequestIdMiddleware)  # every response carries the id
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: on every response
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(api_router, prefix="/api")
    _add_runnable_routes(
        app,
        chat_graph=chat_graph,
        completion=build_completion_chain(registry.chat_model),
        rag_graph=rag_graph,
        retriever=build_retriever(search),
        prompt=prompt_playground,
    )
    return app


# --- LangServe (the only place that knows it) -----------------------------------------


def _let_streams_finish_on_shutdown() -> None:
    """Undo sse-starlette's patch of uvicorn's signal handler (it comes with LangServe).

    The patch ends every LangServe stream the moment SIGTERM arrives, mid-answer and without
    its ``end`` event; without it a stream finishes like any request, within uvicorn's
    graceful shutdown (``AHC_SHUTDOWN_GRACE_SECONDS``), and is cancelled only after it.
    """
    from sse_starlette.sse import unpatch_uvicorn_signal_handler

    unpatch_uvicorn_signal_handler()


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


# (The ignore: the pydantic mypy plugin trips over RunnableBinding's own `kwargs` field.)
class _ServedRunnable(RunnableBinding[Any, Any]):  # type: ignore[no-redef]
    """A binding that shows its runnable's own config schema (LangGraph's included)."""

    def config_schema(self, *, include: Sequence[str] | None = None) -> type[BaseModel]:
        """The bound runnable's."""
        return self.bound.config_schema(include=include)

    def get_config_jsonschema(self, *, include: Sequence[str] | None = None) -> dict[str, Any]:
        """The bound runnable's."""
        return self.bound.get_config_jsonschema(include=include)


def _keep_server_config(runnable: Runnable) -> Runnable:
    """The runnable, run with the server-set callbacks, tags and metadata when missing.

    LangServe's ``/batch`` projects the modifier's config onto ``configurable`` again,
    dropping the rest, so a batch's model calls would go unaccounted and its traces lose
    the caller; ``/invoke`` and the streams keep them (then nothing is added twice).
    """

    def restore(config: RunnableConfig) -> RunnableConfig:
        carried = (config.get("configurable") or {}).get(_SERVER_CONFIG) or {}
        restored: dict[str, Any] = {}
        present = config.get("callbacks")
        current = (
            present.handlers if isinstance(present, BaseCallbackManager) else list(present or [])
        )
        if missing := [h for h in carried.get("callbacks", ()) if h not in current]:
            restored["callbacks"] = missing
        if tags := [t for t in carried.get("tags", ()) if t not in (config.get("tags") or [])]:
            restored["tags"] = tags
        metadata = config.get("metadata") or {}
        if extra := {k: v for k, v in carried.get("metadata", {}).items() if k not in metadata}:
            restored["metadata"] = extra
        return cast(RunnableConfig, restored)

    return _ServedRunnable(bound=runnable, config_factories=[restore])


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


def _add_runnable_routes(
    app: FastAPI,
    *,
    chat_graph: Any,
    completion: Any,
    rag_graph: Any,
    retriever: Any,
    prompt: Any,
) -> None:
    """Expose the runnables under ``/runnables`` (invoke, batch, stream, playground...)."""
    auth = [Depends(runnable_principal), Depends(_json_object_body)]

    def serve(path: str, runnable: Any, modifier: ConfigModifier) -> None:
        add_routes(
            app,
            _keep_server_config(runnable),
            path=path,
            dependencies=auth,
            per_req_config_modifier=_with_server_config(modifier),
        )

    def turns_of(graph: Any) -> Runnable:
        """The graph, one run at a time per thread (``api.runnable_turns``)."""
        return serialize_turns(graph, lambda: app.state.services.turn_locks)

    serve(
        "/runnables/chat",
        turns_of(chat_graph),
        _config_modifier(flow="runnables.chat", with_threads=True),
    )
    serve(
        "/runnables/completion",
        completion,
        _config_modifier(flow="runnables.completion", with_threads=False),
    )
    serve(
        "/runnables/rag",
        turns_of(rag_graph),
        _config_modifier(
            flow="runnables.rag",
            with_threads=True,
            require_thread=False,  # a one-off key when the client names no thread
            thread_prefix=RAG_THREAD_PREFIX,
        ),
    )
    serve("/runnables/retriever", retriever, _retriever_config_modifier(flow="runnables.retriever"))
    serve("/runnables/prompt", prompt, _prompt_config_modifier(flow="runnables.prompt"))


app = create_app()
