"""The chat use case behind ``/api/chat/completions`` and ``/api/chat/stream``.

Two paths, one wire format:
- stateless (no ``thread_id``): the lean relay forwards the OpenAI body to the provider;
- with ``thread_id``: the chat graph (LangChain + LangGraph checkpointer) keeps the
  conversation, so the client sends only the new turn.
Both check the request the same way and fail with the same errors.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import openai
import orjson
from langchain_core.messages import AIMessageChunk, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langsmith.run_trees import RunTree
from pydantic import ValidationError

from accounting.accountant import Accountant
from accounting.events import CallContext
from api.schemas import ChatCompletionRequest
from auth.tokens import Principal
from core.errors import ApiError
from core.request_id import current_request_id
from core.tracing import RelayTracer, run_metadata
from db.models import checkpoint_key
from graphs.chat.state import ChatInput
from limits.enforcer import LimitEnforcer
from providers.errors import map_openai_error, upstream_errors
from providers.keys import ProviderKeyStore, org_openai_key
from providers.registry import ModelRegistry, ModelRoute
from providers.relay import OpenAIRelay, OutcomeHook, RelayOutcome
from services import openai_format as fmt
from services.graph_stream import MessageChunk, TokenPump
from services.response_cache import ResponseCache, cache_key
from services.threads import ThreadStore

# Keys of our own (never sent upstream) and keys the relay sets itself.
_SERVICE_KEYS = frozenset({"thread_id", "metadata", "model", "stream", "stream_options", "cache"})


def check_request(request: ChatCompletionRequest) -> None:
    """Refuse what the service does not support yet, with a clear 400."""
    for name in ("tools", "tool_choice", "functions", "function_call"):
        if getattr(request, name) is not None:
            raise ApiError(400, "unsupported_parameter", f"'{name}' is not supported yet")
    if request.n not in (None, 1):
        raise ApiError(400, "unsupported_parameter", "only n=1 is supported")
    if not request.messages:
        raise ApiError(400, "missing_messages", "'messages' must contain at least one message")


class ChatService:
    """Routes a chat completion to the relay or to the chat-with-memory graph."""

    def __init__(
        self,
        *,
        registry: ModelRegistry,
        relay: OpenAIRelay,
        threads: ThreadStore,
        graph: CompiledStateGraph,
        accountant: Accountant,
        tracer: RelayTracer,
        limits: LimitEnforcer,
        provider_keys: ProviderKeyStore,
        cache: ResponseCache,
    ) -> None:
        self._registry = registry
        self._relay = relay
        self._threads = threads
        self._graph = graph
        self._accountant = accountant
        self._tracer = tracer
        self._limits = limits
        self._provider_keys = provider_keys
        self._cache = cache

    # -- public API ---------------------------------------------------------------
    async def complete(
        self, principal: Principal, request: ChatCompletionRequest, *, flow: str
    ) -> bytes:
        """A ``chat.completion`` JSON body."""
        check_request(request)
        route = await self._route(principal, request)
        context = _context(principal, flow, request)
        if request.thread_id is None:
            return await self._relay_complete(principal, request, route, context)
        config, inputs = await self._thread_call(principal, request, route, context)
        with upstream_errors(route.upstream.provider):
            try:
                state = await self._graph.ainvoke(inputs, config)
            except BaseException:
                await self._rollback(config, inputs)
                raise
        body = fmt.completion_body(
            cid=fmt.completion_id(), model=route.name, message=state["messages"][-1]
        )
        return orjson.dumps(body)

    async def stream(
        self, principal: Principal, request: ChatCompletionRequest, *, flow: str
    ) -> AsyncIterator[bytes]:
        """SSE events of a streamed completion; upstream errors raise before the first byte."""
        check_request(request)
        route = await self._route(principal, request)
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        context = _context(principal, flow, request)
        if request.thread_id is None:
            return await self._relay_stream(principal, request, route, context, include_usage)
        config, inputs = await self._thread_call(principal, request, route, context)
        pump = TokenPump(self._graph, inputs, config)
        with upstream_errors(route.upstream.provider):
            try:
                first = await pump.next()
            except BaseException:
                await pump.cancel()
                await self._rollback(config, inputs)
                raise
        return self._relay_graph_stream(first, pump, route, include_usage, config, inputs)

    # -- stateless path: the relay, behind the response cache -------------------------
    async def _relay_complete(
        self,
        principal: Principal,
        request: ChatCompletionRequest,
        route: ModelRoute,
        context: CallContext,
    ) -> bytes:
        started = time.perf_counter()
        body = _upstream_body(request)
        key = self._cache_key(principal, request, route, body)
        if key is not None and (hit := await self._cache.get(key)) is not None:
            self._accountant.cache_hit(context, route, started)
            return hit
        context, cap = await self._hold(principal, context, route, request)
        if cap is not None:
            body["max_tokens"] = cap
        run = self._tracer.start(context, route.name, body)
        try:
            content, outcome = await self._relay.complete(route, body)
        except ApiError as error:
            self._accountant.relay_failed(context, route.name, started, error.code)
            self._tracer.end(run, usage=None, error=error.code)
            raise
        self._relay_hook(context, request, run)(outcome)
        if key is not None:
            self._cache.put(key, principal.org_id, content)
        return content

    async def _relay_stream(
        self,
        principal: Principal,
        request: ChatCompletionRequest,
        route: ModelRoute,
        context: CallContext,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        body = _upstream_body(request)
        key = self._cache_key(principal, request, route, body)
        if key is not None and (hit := await self._cache.get(key)) is not None:
            self._accountant.cache_hit(context, route, started)
            return fmt.replay_stream(hit, include_usage=include_usage)
        context, cap = await self._hold(principal, context, route, request)
        if cap is not None:
            body["max_tokens"] = cap
        run = self._tracer.start(context, route.name, body)
        hook = self._relay_hook(context, request, run)
        if key is not None:
            hook = self._caching(hook, key, principal.org_id, route)
        try:
            return await self._relay.open_stream(
                route, body, include_usage=include_usage, on_done=hook, collect_text=key is not None
            )
        except ApiError as error:
            self._accountant.relay_failed(context, route.name, started, error.code)
            self._tracer.end(run, usage=None, error=error.code)
            raise

    @staticmethod
    def _cache_key(
        principal: Principal,
        request: ChatCompletionRequest,
        route: ModelRoute,
        body: dict[str, Any],
    ) -> str | None:
        """The cache key of a deterministic (or opted-in) request, else None."""
        wanted = request.cache if request.cache is not None else request.temperature == 0
        return cache_key(principal.org_id, route.name, body) if wanted else None

    def _caching(self, hook: OutcomeHook, key: str, org_id: str, route: ModelRoute) -> OutcomeHook:
        """Also store a completed streamed answer, as the completion it amounts to."""

        def done(outcome: RelayOutcome) -> None:
            hook(outcome)
            if outcome.completed and outcome.error is None and outcome.text is not None:
                body = fmt.text_completion(
                    model=route.name,
                    text="".join(outcome.text),
                    finish=outcome.finish_reason or "stop",
                    usage=outcome.usage,
                )
                self._cache.put(key, org_id, orjson.dumps(body))

        return done

    async def _route(self, principal: Principal, request: ChatCompletionRequest) -> ModelRoute:
        """The model's upstream, with the org's own key when it stored one.

        The key is also put in the request's context for the chat graph's model factory.
        """
        org_key = await self._provider_keys.get(principal.org_id, "openai")
        org_openai_key.set(org_key)
        return self._registry.resolve(request.model, org_key=org_key)

    async def _hold(
        self,
        principal: Principal,
        context: CallContext,
        route: ModelRoute,
        request: ChatCompletionRequest,
    ) -> tuple[CallContext, int | None]:
        """Reserve against the caller's limits (429 when over); the reply cap to impose."""
        return await self._limits.hold(
            principal,
            context,
            model=route.name,
            prompt=lambda: " ".join(str(m.content or "") for m in request.messages),
            messages=len(request.messages),
            reply_limit=request.reply_limit,
        )

    def _relay_hook(
        self, context: CallContext, request: ChatCompletionRequest, run: RunTree | None
    ) -> OutcomeHook:
        """Account (and trace) a relayed call once its outcome is known."""
        account = self._accountant.relay_done(context, request.messages)
        if run is None:
            return account

        def done(outcome: RelayOutcome) -> None:
            account(outcome)
            self._tracer.end(run, usage=outcome.usage, error=outcome.error)

        return done

    # -- memory path --------------------------------------------------------------
    async def _thread_call(
        self,
        principal: Principal,
        request: ChatCompletionRequest,
        route: ModelRoute,
        context: CallContext,
    ) -> tuple[RunnableConfig, dict[str, Any]]:
        assert request.thread_id is not None
        try:  # the graph's own input contract: convertible and storable messages
            messages = ChatInput.model_validate(
                {"messages": [m.model_dump(exclude_none=True) for m in request.messages]}
            ).messages
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", exc.errors()[0]["msg"]) from exc
        for message in messages:
            message.id = message.id or str(uuid.uuid4())
        first_user = next((m.text for m in messages if m.type == "human"), None)
        await self._threads.claim(
            principal,
            request.thread_id,
            model=route.name,
            metadata=request.metadata,
            title=first_user,
        )
        context, cap = await self._hold(principal, context, route, request)
        configurable: dict[str, Any] = {
            "model": route.name,
            "temperature": request.temperature,
            "max_tokens": request.reply_limit or cap,
            "stop": request.stop_list,
            "thread_id": checkpoint_key(principal.org_id, request.thread_id),
            "org_id": principal.org_id,
            "user_id": principal.user_id,
        }
        config: RunnableConfig = {
            "configurable": configurable,
            "callbacks": [self._accountant.callback(context)],
            **run_metadata(context),  # type: ignore[typeddict-item]
        }
        return config, {"messages": messages}

    async def _rollback(self, config: RunnableConfig, inputs: dict[str, Any]) -> None:
        """A failed turn leaves no dangling user message in the thread."""
        removals = [RemoveMessage(id=m.id) for m in inputs["messages"] if m.id]
        try:
            await self._graph.aupdate_state(config, {"messages": removals}, as_node="call_model")
        except (ValueError, KeyError):  # nothing was written yet
            pass

    async def _relay_graph_stream(
        self,
        first: MessageChunk | None,
        pump: TokenPump,
        route: ModelRoute,
        include_usage: bool,
        config: RunnableConfig,
        inputs: dict[str, Any],
    ) -> AsyncIterator[bytes]:
        cid, created, model = fmt.completion_id(), int(time.time()), route.name
        yield fmt.chunk_event(
            cid=cid, model=model, created=created, delta={"role": "assistant", "content": ""}
        )
        usage: dict[str, int] | None = None
        finish = "stop"

        async def messages() -> AsyncIterator[MessageChunk]:
            item = first
            while item is not None:
                yield item
                item = await pump.next()

        finished = False
        try:
            async for message, _meta in messages():
                if not isinstance(message, AIMessageChunk):
                    continue
                if message.text:
                    yield fmt.chunk_event(
                        cid=cid, model=model, created=created, delta={"content": message.text}
                    )
                usage = fmt.usage_dict(message) or usage
                finish = message.response_metadata.get("finish_reason") or finish
            finished = True
        except openai.OpenAIError as exc:
            error = map_openai_error(route.upstream.provider, exc)
            yield b"data: " + orjson.dumps(error.body()) + b"\n\n"
        finally:
            if not finished:
                # Failed, or the client went away: stop the model call now and take the
                # unanswered turn back out of the thread. Shielded: the response's
                # cancel scope would cancel these awaits too.
                with anyio.CancelScope(shield=True):
                    await pump.cancel()
                    await self._rollback(config, inputs)
        if not finished:
            return
        yield fmt.chunk_event(cid=cid, model=model, created=created, finish=finish)
        if include_usage and usage is not None:
            yield fmt.chunk_event(cid=cid, model=model, created=created, usage=usage)
        yield fmt.DONE_EVENT


def _context(principal: Principal, flow: str, request: ChatCompletionRequest) -> CallContext:
    """Who and where, for the usage events of this request."""
    return CallContext(
        org_id=principal.org_id,
        user_id=principal.user_id,
        route=flow,
        request_id=current_request_id(),
        thread_id=request.thread_id,
    )


def _upstream_body(request: ChatCompletionRequest) -> dict[str, Any]:
    """The client's body as the provider should see it (our own keys removed)."""
    return request.model_dump(exclude_unset=True, exclude_none=True, exclude=set(_SERVICE_KEYS))
