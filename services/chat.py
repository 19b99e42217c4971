"""The chat use case behind ``/api/chat/completions`` and ``/api/chat/stream``.

Two paths, one wire format:
- stateless (no ``thread_id``): the lean relay forwards the OpenAI body to the provider;
- with ``thread_id``: ``services.thread_chat`` runs the turn through the chat graph
  (LangChain + LangGraph checkpointer), so the client sends only the new turn.
Both check the request, resolve the model and the org's key, and fail, the same way.
A ``template`` is rendered first (``services.template_use``): both paths, the cache key and
the limits see the rendered messages, and the usage events name the template's version.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from langsmith.run_trees import RunTree

from accounting.events import CallContext
from auth.tokens import Principal
from core.errors import ApiError
from core.request_id import current_request_id
from core.tracing import RelayTracer
from providers.registry import ModelRoute
from providers.relay import OpenAIRelay, OutcomeHook, RelayOutcome
from services import openai_format as fmt
from services.gateway_types import ChatRequest, wire_messages
from services.metering import MeteredCall, MeteringGate
from services.prompt_templates import PromptTemplates, ResolvedTemplate
from services.response_cache import ResponseCache, cache_key
from services.semantic_cache import SemanticCache, context_key, split_question
from services.template_use import apply_chat_template, with_template
from services.thread_chat import ThreadChat
from services.tool_checks import check_tools, uses_tools


def check_request(request: ChatRequest) -> None:
    """Refuse what the service does not support (yet) or what is malformed, with a clear 400.

    With ``thread_id``, the tool messages are checked against the thread's earlier calls
    too, by ``services.thread_chat`` once it holds the thread.
    """
    params = request.params
    if params.get("n") not in (None, 1):
        raise ApiError(400, "unsupported_parameter", "only n=1 is supported")
    if not request.messages:
        raise ApiError(400, "missing_messages", "'messages' must contain at least one message")
    check_tools(request, exchange=request.thread_id is None)


def check_route(request: ChatRequest, route: ModelRoute, gate: MeteringGate) -> None:
    """Refuse tools for a model that cannot call them (the embedded local model), naming one."""
    if route.upstream.provider != "local" or not uses_tools(request):
        return
    registry = gate.registry
    able = [name for name in registry.names() if registry.owner(name) != "local"]
    instead = f"use '{able[0]}'" if able else "no configured model can"
    raise ApiError(
        400,
        "unsupported_parameter",
        f"model '{route.name}' cannot call tools; {instead}",
        details={"param": "model"},
    )


class ChatService:
    """Routes a chat completion to the relay (stateless) or to the thread's graph (memory)."""

    def __init__(
        self,
        *,
        gate: MeteringGate,
        relay: OpenAIRelay,
        threads: ThreadChat,
        tracer: RelayTracer,
        cache: ResponseCache,
        semantic_cache: SemanticCache | None = None,
        templates: PromptTemplates | None = None,
    ) -> None:
        self._gate = gate
        self._relay = relay
        self._threads = threads
        self._accountant = gate.accountant
        self._tracer = tracer
        self._cache = cache
        self._semantic = semantic_cache
        self._templates = templates

    # -- public API ---------------------------------------------------------------
    async def complete(self, principal: Principal, request: ChatRequest, *, flow: str) -> bytes:
        """A ``chat.completion`` JSON body."""
        request, template = await self._render_template(principal, request)
        check_request(request)
        route = await self._gate.resolve(principal.org_id, request.model)
        check_route(request, route, self._gate)
        context = _context(principal, flow, request, template)
        if request.thread_id is None:
            return await self._relay_complete(principal, request, route, context)
        return await self._threads.complete(principal, request, route, context)

    async def stream(
        self, principal: Principal, request: ChatRequest, *, flow: str
    ) -> AsyncIterator[bytes]:
        """SSE events of a streamed completion; upstream errors raise before the first byte."""
        request, template = await self._render_template(principal, request)
        check_request(request)
        route = await self._gate.resolve(principal.org_id, request.model)
        check_route(request, route, self._gate)
        include_usage = request.include_usage
        context = _context(principal, flow, request, template)
        if request.thread_id is None:
            return await self._relay_stream(principal, request, route, context, include_usage)
        return await self._threads.stream(principal, request, route, context, include_usage)

    # -- stateless path: the relay, behind the response cache -------------------------
    async def _relay_complete(
        self,
        principal: Principal,
        request: ChatRequest,
        route: ModelRoute,
        context: CallContext,
    ) -> bytes:
        started = time.perf_counter()
        body = _upstream_body(request)
        key = self._cache_key(principal, request, route, body)
        similar: _Similar | None = None
        if key is not None:
            hit, similar = await self._cached(
                key, principal, route, body, context, semantic=not uses_tools(request)
            )
            if hit is not None:
                self._accountant.cache_hit(context, route, started)
                return hit
        call = await self._hold(principal, context, route, request)
        if call.cap is not None:
            body["max_tokens"] = call.cap
        run = self._tracer.start(call.context, route.name, body)
        try:
            content, outcome = await self._relay.complete(route, body)
        except ApiError as error:
            call.relay_failed(started, error.code)
            self._tracer.end(run, usage=None, error=error.code)
            raise
        self._relay_hook(call, request, run)(outcome)
        if key is not None:
            self._store(key, principal.org_id, content, similar)
        return content

    async def _relay_stream(
        self,
        principal: Principal,
        request: ChatRequest,
        route: ModelRoute,
        context: CallContext,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        body = _upstream_body(request)
        key = self._cache_key(principal, request, route, body)
        similar: _Similar | None = None
        if key is not None:
            hit, similar = await self._cached(
                key, principal, route, body, context, semantic=not uses_tools(request)
            )
            if hit is not None:
                self._accountant.cache_hit(context, route, started)
                return fmt.replay_stream(hit, include_usage=include_usage)
        call = await self._hold(principal, context, route, request)
        if call.cap is not None:
            body["max_tokens"] = call.cap
        run = self._tracer.start(call.context, route.name, body)
        hook = self._relay_hook(call, request, run)
        if key is not None:
            hook = self._caching(hook, key, principal.org_id, route, similar)
        try:
            return await self._relay.open_stream(
                route, body, include_usage=include_usage, on_done=hook, collect_text=key is not None
            )
        except ApiError as error:
            call.relay_failed(started, error.code)
            self._tracer.end(run, usage=None, error=error.code)
            raise

    async def _hold(
        self, principal: Principal, context: CallContext, route: ModelRoute, request: ChatRequest
    ) -> MeteredCall:
        """Reserve against the caller's limits (429 when over); settled by the relay hooks."""
        return await self._gate.hold_chat(principal, context, route, request)

    @staticmethod
    def _cache_key(
        principal: Principal,
        request: ChatRequest,
        route: ModelRoute,
        body: dict[str, Any],
    ) -> str | None:
        """The cache key of a deterministic (or opted-in) request, else None.

        A tool-call answer is cached like any other: the key covers every message, the
        tools, ``tool_choice`` and ``response_format``, so a hit answers exactly the same
        request, and the client runs its tools as it would on a fresh deterministic answer
        (the gateway executes nothing). Tool requests skip the semantic cache (see
        :meth:`_cached`).
        """
        wanted = (
            request.cache if request.cache is not None else request.params.get("temperature") == 0
        )
        return cache_key(principal.org_id, route.name, body) if wanted else None

    async def _cached(
        self,
        key: str,
        principal: Principal,
        route: ModelRoute,
        body: dict[str, Any],
        context: CallContext,
        *,
        semantic: bool = True,
    ) -> tuple[bytes | None, _Similar | None]:
        """An exact hit; else a semantic one; else what to index the answer under.

        Never semantic for tool requests: a similar question's tool call would carry the
        arguments taken from the other question (another city, another id).
        """
        hit = await self._cache.get(key)
        if hit is not None or self._semantic is None or not semantic:
            return hit, None
        parts = split_question(body)
        if parts is None:
            return None, None
        question, earlier = parts
        vector = await self._semantic.embed(question, context)
        if vector is None:
            return None, None
        similar = _Similar(
            context_key(principal.org_id, route.name, body, earlier), vector, question
        )
        found = await self._semantic.lookup(similar.context, vector)
        if found is not None and (hit := await self._cache.get(found)) is not None:
            return hit, None
        return None, similar

    def _store(self, key: str, org_id: str, content: bytes, similar: _Similar | None) -> None:
        """Cache an answer exactly, and index its question for the semantic cache."""
        self._cache.put(key, org_id, content)
        if similar is not None and self._semantic is not None:
            self._semantic.remember(similar.context, similar.vector, similar.question, key)

    def _caching(
        self,
        hook: OutcomeHook,
        key: str,
        org_id: str,
        route: ModelRoute,
        similar: _Similar | None = None,
    ) -> OutcomeHook:
        """Also store a completed streamed answer, as the completion it amounts to."""

        def done(outcome: RelayOutcome) -> None:
            hook(outcome)
            if outcome.completed and outcome.error is None and outcome.text is not None:
                body = fmt.text_completion(
                    model=route.name,
                    text="".join(outcome.text),
                    finish=outcome.finish_reason or "stop",
                    usage=outcome.usage,
                    tool_calls=outcome.tool_calls,
                    function_call=outcome.function_call,
                )
                self._store(key, org_id, orjson.dumps(body), similar)

        return done

    async def _render_template(
        self, principal: Principal, request: ChatRequest
    ) -> tuple[ChatRequest, ResolvedTemplate | None]:
        """The request with its template's messages and defaults (unchanged without one)."""
        if request.template is None:
            return request, None
        if self._templates is None:
            raise ApiError(400, "unsupported_parameter", "'template' is not available here")
        return await apply_chat_template(self._templates, principal.org_id, request)

    def _relay_hook(
        self, call: MeteredCall, request: ChatRequest, run: RunTree | None
    ) -> OutcomeHook:
        """Account (and trace) a relayed call once its outcome is known."""
        account = call.relay_done(request.messages)
        if run is None:
            return account

        def done(outcome: RelayOutcome) -> None:
            account(outcome)
            self._tracer.end(run, usage=outcome.usage, error=outcome.error)

        return done


@dataclass(frozen=True, slots=True)
class _Similar:
    """A question to index in the semantic cache once its answer is cached."""

    context: str
    vector: list[float]
    question: str


def _context(
    principal: Principal,
    flow: str,
    request: ChatRequest,
    template: ResolvedTemplate | None = None,
) -> CallContext:
    """Who and where (and which template version), for the usage events of this request."""
    context = CallContext.for_principal(
        principal, flow, request_id=current_request_id(), thread_id=request.thread_id
    )
    return with_template(context, template)


def _upstream_body(request: ChatRequest) -> dict[str, Any]:
    """The request as the provider should see it (our own keys are not in ``params``)."""
    return {"messages": wire_messages(request.messages), **request.params}
