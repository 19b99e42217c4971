"""The RAG use case behind ``POST /api/knowledge/query``: one question through the RAG graph.

It resolves the model (and the org's own key), claims the thread when there is one,
reserves against the org's limits, and runs the graph with the identity, the accounting
callback and the tracing metadata written by the server. Threads keep their RAG turns in
the chat checkpointer under ``rag:<org>/<thread id>``, apart from the chat turns of the
same thread id; a call without a thread runs the graph without a checkpointer. The turns
of a thread run one at a time (``services.turn_locks``, keyed by that checkpoint key), and
a first turn that is not kept takes back the thread it created.

A ``template`` names the answer prompt (``services.template_use``: it must use exactly
``context`` and ``question``, which the service supplies); without one the built-in prompt
(the ``rag-answer`` starter) answers. Its model and params apply where the request sets
none, and the model calls' usage events record its name and version.

Streams are SSE: ``{"type": "token", "content"}`` while the model writes, then
``{"type": "citations", "citations"}``, ``{"type": "usage", "usage", "model"}`` and
``[DONE]``; a failure after the first event is ``{"type": "error", "error": {...}}``.
A client that goes away stops the run, down to the provider's HTTP stream.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import openai
import orjson
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.messages import AIMessageChunk
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from accounting.callbacks import abandon_calls
from accounting.events import CallContext
from auth.tokens import Principal
from core.errors import ApiError, error_body
from core.request_id import current_request_id
from db.models import rag_checkpoint_key
from graphs.rag.configuration import RetrievalQuery, SearchFn
from graphs.rag.state import Hit
from providers.errors import map_openai_error, upstream_errors
from providers.registry import ModelRoute
from services.gateway_types import KnowledgeQuestion
from services.graph_stream import TokenPump
from services.knowledge import KnowledgeService, SearchQuery
from services.metering import MeteredCall, MeteringGate
from services.prompt_templates import PromptTemplates, ResolvedTemplate
from services.template_use import apply_template_defaults, rag_answer_template, with_template
from services.threads import ThreadClaim, ThreadStore
from services.turn_locks import TurnLease, TurnLocks, after_response

logger = logging.getLogger(__name__)

_STREAM_MODE = ("messages", "updates")


def knowledge_search(knowledge: Callable[[], KnowledgeService]) -> SearchFn:
    """The RAG graph's search over the knowledge service (looked up at call time).

    The embedding of the query is accounted to the org, user, route and request the
    server wrote into the run's configurable.
    """

    async def search(query: RetrievalQuery) -> list[Hit]:
        context = CallContext(
            org_id=query.org_id,
            user_id=query.user_id,
            route=query.route,
            request_id=query.request_id,
        )
        hits = await knowledge().search(
            context,
            SearchQuery(
                query=query.query,
                k=query.k,
                filter=query.filter,
                collection=query.collection,
                mode=query.mode,
                min_similarity=query.min_similarity,
                rerank=query.rerank,
            ),
        )
        return [Hit(**asdict(hit)) for hit in hits]  # type: ignore[typeddict-item]

    return search


class _Usage(UsageMetadataCallbackHandler):
    """Adds up the provider-reported tokens of the run's model calls."""

    run_inline = True

    def totals(self) -> dict[str, int]:
        prompt = sum(u.get("input_tokens", 0) for u in self.usage_metadata.values())
        completion = sum(u.get("output_tokens", 0) for u in self.usage_metadata.values())
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }


@dataclass
class _Run:
    """One prepared run: which graph, with what input and config; its thread's turn."""

    graph: Runnable
    inputs: dict[str, Any]
    config: RunnableConfig
    call: MeteredCall
    usage: _Usage
    thread_id: str | None
    principal: Principal
    turn: _ThreadTurn | None = None
    """With a thread: the lock held and the claim made for this turn."""
    pump: TokenPump | None = None
    ended: bool = False

    @property
    def route(self) -> ModelRoute:
        """The model the run calls."""
        return self.call.route


@dataclass(frozen=True, slots=True)
class _ThreadTurn:
    """A knowledge-query turn of a thread: its checkpoint key, lock and claim."""

    key: str
    lease: TurnLease
    claim: ThreadClaim


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _token(item: tuple[str, Any]) -> str | None:
    """The text of a model chunk streamed by the ``generate`` node."""
    mode, payload = item
    if mode != "messages":
        return None
    message, meta = payload
    if meta.get("langgraph_node") != "generate" or not isinstance(message, AIMessageChunk):
        return None
    return message.text or None


def _update(item: tuple[str, Any], node: str) -> dict[str, Any] | None:
    mode, payload = item
    if mode != "updates" or not isinstance(payload, dict):
        return None
    update = payload.get(node)
    return update if isinstance(update, dict) else None


class KnowledgeQuery:
    """Answers questions from an org's knowledge base: limits, accounting, threads."""

    def __init__(
        self,
        *,
        graph: CompiledStateGraph,
        gate: MeteringGate,
        threads: ThreadStore,
        locks: TurnLocks,
        templates: PromptTemplates | None = None,
    ) -> None:
        self._graph = graph  # checkpointed (threads)
        self._locks = locks
        self._stateless = graph.copy({"checkpointer": None})
        self._gate = gate
        self._threads = threads
        self._templates = templates

    async def answer(
        self, principal: Principal, request: KnowledgeQuestion, *, flow: str
    ) -> dict[str, Any]:
        """The grounded answer, its citations and the tokens it took."""
        run = await self._prepare(principal, request, flow)
        kept = False
        try:
            with upstream_errors(run.route.upstream.provider):
                out = await run.graph.ainvoke(run.inputs, run.config)
            kept = True
        finally:
            with anyio.CancelScope(shield=True):
                await self._end(run, kept=kept)
        return {
            "answer": out["answer"],
            "citations": out["citations"],
            "usage": run.usage.totals(),
            "model": run.route.name,
            "thread_id": run.thread_id,
        }

    async def stream(
        self, principal: Principal, request: KnowledgeQuestion, *, flow: str
    ) -> AsyncIterator[bytes]:
        """Start the run; its SSE events (failures before the first token raise here)."""
        run = await self._prepare(principal, request, flow)
        pump = run.pump = TokenPump(run.graph, run.inputs, run.config, stream_mode=_STREAM_MODE)

        async def abandon() -> None:
            await self._end(run, kept=False)

        after_response(abandon)  # a no-op once the stream ended the run
        ahead: list[tuple[str, Any]] = []
        ended = False
        try:
            with upstream_errors(run.route.upstream.provider):
                while True:  # retrieval errors, unknown collections... stay HTTP errors
                    item = await pump.next()
                    if item is None:
                        ended = True
                        break
                    ahead.append(item)
                    if _token(item) or _update(item, "generate") is not None:
                        break
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._end(run, kept=False)
            raise
        return self._events(run, pump, ahead, ended)

    async def _events(
        self, run: _Run, pump: TokenPump, ahead: list[tuple[str, Any]], ended: bool
    ) -> AsyncIterator[bytes]:
        async def items() -> AsyncIterator[tuple[str, Any]]:
            for early in ahead:
                yield early
            if ended:
                return
            while (later := await pump.next()) is not None:
                yield later

        streamed = False
        citations: list[Any] = []
        finished = False
        try:
            async for item in items():
                if text := _token(item):
                    streamed = True
                    yield _event({"type": "token", "content": text})
                elif (generated := _update(item, "generate")) is not None:
                    if not streamed and generated.get("answer"):  # not found: no model call
                        streamed = True
                        yield _event({"type": "token", "content": generated["answer"]})
                elif (cited := _update(item, "cite")) is not None:
                    citations = list(cited.get("citations") or [])
            finished = True
        except openai.OpenAIError as exc:
            yield _event(
                {"type": "error", **map_openai_error(run.route.upstream.provider, exc).body()}
            )
        except ApiError as exc:
            yield _event({"type": "error", **exc.body()})
        except Exception:
            logger.exception("the RAG run failed mid-stream")
            yield _event({"type": "error", **error_body("internal_error", "internal error", 500)})
        finally:
            # Finished, failed, or the client went away: stop the model call now, end the
            # thread's turn. Shielded: the response's cancel scope would cancel it too.
            with anyio.CancelScope(shield=True):
                await self._end(run, kept=finished)
        if not finished:
            return
        yield _event({"type": "citations", "citations": citations})
        yield _event({"type": "usage", "usage": run.usage.totals(), "model": run.route.name})
        yield b"data: [DONE]\n\n"

    async def _prepare(self, principal: Principal, request: KnowledgeQuestion, flow: str) -> _Run:
        """Resolve template and model, claim the thread, hold the limits, build the config."""
        template = await self._answer_template(principal, request)
        given = {
            "model": request.model,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        params = apply_template_defaults(template, given)
        route = await self._gate.resolve(principal.org_id, params.get("model"))
        configurable: dict[str, Any] = {
            "temperature": params.get("temperature"),
            "stop": params.get("stop"),
            "answer_prompt": template.prompt if template is not None else None,
            "collection": request.collection,
            "k": request.k,
            "filter": request.filter,
            "mode": request.mode,
            "min_similarity": request.min_similarity,
            "rerank": request.rerank,
        }
        graph: Runnable = self._stateless
        turn: _ThreadTurn | None = None
        if request.thread_id is not None:
            turn = await self._begin_turn(principal, request.thread_id, route, request.question)
            configurable["thread_id"] = turn.key
            graph = self._graph
        context = with_template(
            CallContext.for_principal(
                principal, flow, request_id=current_request_id(), thread_id=request.thread_id
            ),
            template,
        )
        max_tokens = params.get("max_tokens")
        try:
            call = await self._gate.hold(
                principal,
                context,
                route,
                prompt=lambda: request.question,
                messages=1,
                reply_limit=max_tokens,
            )
        except BaseException:  # over a limit: the turn ends before it started
            if turn is not None:
                with anyio.CancelScope(shield=True):
                    await self._end_turn(principal, turn, kept=False)
            raise
        configurable["max_tokens"] = max_tokens or call.cap
        usage = _Usage()
        config = call.runnable_config(
            {k: v for k, v in configurable.items() if v is not None}, callbacks=[usage]
        )
        return _Run(
            graph=graph,
            inputs={"question": request.question},
            config=config,
            call=call,
            usage=usage,
            thread_id=request.thread_id,
            principal=principal,
            turn=turn,
        )

    async def _begin_turn(
        self, principal: Principal, thread_id: str, route: ModelRoute, question: str
    ) -> _ThreadTurn:
        """As the thread's only knowledge-query turn: its lock, then its claim."""
        key = rag_checkpoint_key(principal.org_id, thread_id)
        lease = await self._locks.acquire(key)
        try:
            claim = await self._threads.claim_turn(
                principal, thread_id, model=route.name, title=question
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await lease.release()
            raise
        return _ThreadTurn(key=key, lease=lease, claim=claim)

    async def _end(self, run: _Run, *, kept: bool) -> None:
        """End the run once: stop it, account a stopped model call, settle, end the turn.

        Callers shield it: a departed client's cancellation must not cut it short.
        """
        if run.ended:
            return
        run.ended = True
        try:
            if run.pump is not None:
                await run.pump.cancel()  # a no-op for a run that has finished
            if not kept:
                abandon_calls(run.config.get("callbacks"))
        finally:
            run.call.release()  # a no-op once a model call settled the hold
            if run.turn is not None:
                await self._end_turn(run.principal, run.turn, kept=kept)

    async def _end_turn(self, principal: Principal, turn: _ThreadTurn, *, kept: bool) -> None:
        """Unlock the thread; a first turn not kept takes back the thread it created.

        (The RAG graph writes a turn's question and answer together at its end: a turn
        that did not finish left nothing to roll back in the checkpoint.)
        """
        try:
            if not kept:
                await self._threads.discard_unused(principal, turn.claim, turn.key)
        finally:
            await turn.lease.release()

    async def _answer_template(
        self, principal: Principal, request: KnowledgeQuestion
    ) -> ResolvedTemplate | None:
        """The request's answer prompt, checked (``None``: the built-in one)."""
        if request.template is None:
            return None
        if self._templates is None:
            raise ApiError(400, "unsupported_parameter", "'template' is not available here")
        return await rag_answer_template(self._templates, principal.org_id, request.template)
