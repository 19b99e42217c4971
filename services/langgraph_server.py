"""The graphs as LangGraph's server runs them (``langgraph dev``, ``langgraph.json``).

``chat`` and ``rag`` are graph factories: LangGraph's server calls them with the run's
config and a ``ServerRuntime`` each time it needs the graph. For anything but a run
(assistants, schemas, Studio's drawing) they give the graph's shape, which calls nothing.
For a run they work as the service's own entry points do, with the service's own
dependencies (the app that ``langgraph.json`` mounts publishes them, ``services.shared``):

- the caller is the user LangGraph's auth handler authenticated (``auth.langgraph_auth``:
  the service's JWTs), never a ``configurable`` key: a graph is compiled for the run with
  the org, user, model route and reply cap as server keys that win over the client's
  (``graphs.configuration.server_owned``);
- the model is resolved and the call held against the caller's limits by the metering
  gate; the accounting callback makes each model call a usage event (routes
  ``langgraph.chat``, ``langgraph.rag``); the hold is given back when the run ends;
- RAG searches the caller's org's knowledge base, as ``/api/knowledge/query`` does.

LangGraph's server keeps the threads (its own checkpointer), one run at a time per thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph_sdk.runtime import ServerRuntime
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from accounting.events import CallContext
from auth.tokens import Principal
from core.errors import ApiError
from graphs.chat.graph import build_chat_graph
from graphs.rag.graph import build_rag_graph
from graphs.rag.state import Hit
from providers.registry import ModelRoute
from services.container import Services
from services.knowledge_query import knowledge_search
from services.metering import MeteredCall
from services.runnable_config import RunnableConfigurable
from services.shared import current_services

CHAT_FLOW = "langgraph.chat"
RAG_FLOW = "langgraph.rag"


@asynccontextmanager
async def chat(config: RunnableConfig, runtime: ServerRuntime) -> AsyncIterator[CompiledStateGraph]:
    """The chat-with-memory graph (``langgraph.json``: ``chat``)."""
    if runtime.execution_runtime is None:
        yield _chat_shape()
        return
    services = current_services()
    settings, registry = services.settings, services.registry
    async with _metered_run(services, runtime, config, flow=CHAT_FLOW) as call:
        graph = build_chat_graph(
            llm_factory=registry.chat_model,
            context_window=lambda model: settings.context_window(model or registry.default_model),
            reply_reserve=settings.memory_reply_reserve_tokens,
            server_keys=_server_keys(call),
        )
        yield _accounted(graph, call)


@asynccontextmanager
async def rag(config: RunnableConfig, runtime: ServerRuntime) -> AsyncIterator[CompiledStateGraph]:
    """Grounded answers from the caller's org's knowledge base (``langgraph.json``: ``rag``)."""
    if runtime.execution_runtime is None:
        yield _rag_shape()
        return
    services = current_services()
    async with _metered_run(services, runtime, config, flow=RAG_FLOW) as call:
        graph = build_rag_graph(
            llm_factory=services.registry.chat_model,
            search=knowledge_search(lambda: services.knowledge),
            server_keys=_server_keys(call),
        )
        yield _accounted(graph, call)


def principal_of(user: Any) -> Principal:
    """The service's caller from LangGraph's authenticated user (``auth.langgraph_auth``).

    Raises:
        HTTPException: 403, the user did not come from the service's auth handler.
    """
    try:
        org_id, user_id, role = user["org_id"], user["user_id"], user["role"]
    except (KeyError, TypeError) as exc:
        raise HTTPException(
            403,
            "the run has no caller from the service's token: langgraph.json must name the "
            'auth handler ("auth": {"path": "./auth/langgraph_auth.py:auth"})',
        ) from exc
    return Principal(org_id=org_id, user_id=user_id, role=role)


@asynccontextmanager
async def _metered_run(
    services: Services, runtime: ServerRuntime, config: RunnableConfig, *, flow: str
) -> AsyncIterator[MeteredCall]:
    """The run's model resolved for its caller and held against the limits, until it ends."""
    principal = principal_of(runtime.user)
    configurable: Mapping[str, Any] = config.get("configurable") or {}
    try:
        client = RunnableConfigurable.model_validate(configurable)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"configurable.{where}: {first['msg']}") from exc
    async with _shown_errors():
        call = await _hold(services, principal, configurable, client, flow)
    async with call:
        yield call


async def _hold(
    services: Services,
    principal: Principal,
    configurable: Mapping[str, Any],
    client: RunnableConfigurable,
    flow: str,
) -> MeteredCall:
    """Resolve the model for the caller's org and hold the call against its limits."""
    gate = services.metering
    route = await gate.resolve(principal.org_id, client.model)
    thread_id = configurable.get("thread_id")
    run_id = configurable.get("run_id")
    context = CallContext.for_principal(
        principal,
        flow,
        request_id=str(run_id) if run_id else None,
        thread_id=str(thread_id) if thread_id else None,
    )
    # The input is not known here (LangGraph hands the factory the config only): the hold
    # reserves the reply cap; the call's usage settles it to the real tokens.
    return await gate.hold(
        principal, context, route, prompt=lambda: "", messages=1, reply_limit=client.max_tokens
    )


@asynccontextmanager
async def _shown_errors() -> AsyncIterator[None]:
    """The service's 4xx (a limit's 429, an unknown model's 400) as errors LangGraph shows.

    LangGraph's server reports a failed run's message only for the exception types it
    trusts (HTTP exceptions among them); any other reads "An internal error occurred".
    """
    try:
        yield
    except ApiError as exc:
        raise HTTPException(exc.status_code, f"{exc.code}: {exc.message}", exc.headers) from exc


def _server_keys(call: MeteredCall) -> dict[str, Any]:
    """Identity, route and reply cap: the ``configurable`` keys no client value overrides."""
    keys = call.configurable()
    if call.cap is not None:
        keys["max_tokens"] = call.cap
    return keys


def _accounted(graph: CompiledStateGraph, call: MeteredCall) -> CompiledStateGraph:
    """``graph`` with the call's accounting callback and tracing metadata on every run."""
    config = call.runnable_config()
    return graph.with_config(
        callbacks=config["callbacks"],
        metadata=config["metadata"],
        tags=config["tags"],
    )


def _no_model(model: ModelRoute | str | None) -> BaseChatModel:
    raise RuntimeError("the graph's shape calls no model")


async def _no_search(query: Any) -> list[Hit]:
    raise RuntimeError("the graph's shape searches nothing")


@cache
def _chat_shape() -> CompiledStateGraph:
    """The chat graph for schemas and drawings (never run)."""
    return build_chat_graph(llm_factory=_no_model)


@cache
def _rag_shape() -> CompiledStateGraph:
    """The RAG graph for schemas and drawings (never run)."""
    return build_rag_graph(llm_factory=_no_model, search=_no_search)
