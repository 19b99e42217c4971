"""The memory path of chat: one turn of a thread through the chat graph.

The conversation lives in LangGraph's checkpointer; the client sends only the new turn.
A turn that fails, or whose client goes away mid-stream, is taken back out of the thread
(no dangling user message; a thread its first turn created goes too), and a departed
client stops the model call, whose delivered tokens are still accounted (estimated).

Tool calling works as on the stateless path: the turn's ``tools``, ``tool_choice``,
``parallel_tool_calls``, ``functions``/``function_call`` and ``response_format`` are bound
on the model for that turn only, and the assistant's calls and the client's ``tool``
results stay in the thread, so the next turn sends only the new results (checked against
the calls the thread holds).

Turns of one thread run one at a time (``services.turn_locks``, keyed by the checkpoint
key): the lock is taken before the thread is claimed and read, and released after the
turn's last write (its rollback included), at the end of the stream for a streamed turn.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import openai
import orjson
from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from pydantic import ValidationError

from accounting.callbacks import abandon_calls
from accounting.events import CallContext
from auth.tokens import Principal
from core.errors import ApiError
from db.models import checkpoint_key
from graphs.chat.state import ChatInput
from providers.errors import map_openai_error, upstream_errors
from providers.registry import ModelRoute
from services import openai_format as fmt
from services.gateway_types import ChatRequest
from services.graph_stream import MessageChunk, TokenPump
from services.metering import MeteredCall, MeteringGate
from services.threads import ThreadClaim, ThreadStore
from services.tool_checks import TOOL_PARAMS, check_exchange
from services.turn_locks import TurnLease, TurnLocks, after_response

TURN_PARAMS = (*TOOL_PARAMS, "response_format")
"""Request parameters bound on the model for the turn (``ChatConfiguration.tool_params``)."""


def _held(message: AnyMessage, calls: set[str | None]) -> bool:
    """Whether ``message`` is an assistant turn whose tool calls the thread already holds."""
    if not isinstance(message, AIMessage) or not message.tool_calls:
        return False
    return all(call.get("id") in calls for call in message.tool_calls)


@dataclass(slots=True)
class _Turn:
    """One turn in progress: its lock, its claim on the thread, its held call and run."""

    principal: Principal
    key: str
    """The thread's checkpoint key (also the key of its turn lock)."""
    lease: TurnLease
    claim: ThreadClaim
    call: MeteredCall
    config: RunnableConfig
    inputs: dict[str, Any]
    pump: TokenPump | None = None
    ended: bool = False


@dataclass(slots=True)
class ThreadTurn:
    """A turn whose graph the caller runs (the voice graph): its config and question ids."""

    config: RunnableConfig
    """The metered run config (thread key, reply cap, accounting callback, tracing)."""
    message_ids: list[str]
    """The ids of the turn's new messages (a turn not kept removes them)."""
    kept: bool = False

    def keep(self) -> None:
        """The thread holds the answer now: ending the turn must not take it back."""
        self.kept = True


class ThreadChat:
    """Runs turns of threads: one at a time, ownership, limits, accounting, rollback."""

    def __init__(
        self,
        *,
        graph: CompiledStateGraph,
        threads: ThreadStore,
        gate: MeteringGate,
        locks: TurnLocks,
    ) -> None:
        self._graph = graph
        self._threads = threads
        self._gate = gate
        self._locks = locks

    async def complete(
        self,
        principal: Principal,
        request: ChatRequest,
        route: ModelRoute,
        context: CallContext,
    ) -> bytes:
        """Run the turn; a ``chat.completion`` body."""
        turn = await self._begin(principal, request, route, context)
        kept = False
        try:
            with upstream_errors(route.upstream.provider):
                state = await self._graph.ainvoke(turn.inputs, turn.config)
            kept = True
        finally:
            with anyio.CancelScope(shield=True):
                await self._end(turn, kept=kept)
        body = fmt.completion_body(
            cid=fmt.completion_id(), model=route.name, message=state["messages"][-1]
        )
        return orjson.dumps(body)

    async def stream(
        self,
        principal: Principal,
        request: ChatRequest,
        route: ModelRoute,
        context: CallContext,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        """Start the turn; its SSE events (errors before the first token raise here).

        The thread's lock and the limit hold stay until the stream ends; should the
        response never iterate its body, the request's end ends the turn.
        """
        turn = await self._begin(principal, request, route, context)
        turn.pump = TokenPump(self._graph, turn.inputs, turn.config)

        async def abandon() -> None:
            await self._end(turn, kept=False)

        after_response(abandon)  # a no-op once the stream ended the turn
        try:
            with upstream_errors(route.upstream.provider):
                first = await turn.pump.next()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._end(turn, kept=False)
            raise
        return self._events(first, turn, include_usage)

    @contextlib.asynccontextmanager
    async def turn(
        self,
        principal: Principal,
        request: ChatRequest,
        route: ModelRoute,
        context: CallContext,
    ) -> AsyncIterator[ThreadTurn]:
        """Hold the thread for a turn that the caller runs on ``config`` (claim, limits, lock).

        On exit the turn ends as the others do: taken back unless :meth:`ThreadTurn.keep`
        was called, the hold settled or released, the lock released (also when cancelled).
        """
        turn = await self._begin(principal, request, route, context)
        handle = ThreadTurn(
            config=turn.config,
            message_ids=[str(m.id) for m in turn.inputs["messages"]],
        )
        try:
            yield handle
        finally:
            with anyio.CancelScope(shield=True):
                await self._end(turn, kept=handle.kept)

    async def _begin(
        self,
        principal: Principal,
        request: ChatRequest,
        route: ModelRoute,
        context: CallContext,
    ) -> _Turn:
        """Check the messages; then, as the thread's only turn: claim, hold, build the run."""
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
        key = checkpoint_key(principal.org_id, request.thread_id)
        lease = await self._locks.acquire(key)
        try:
            claim = await self._threads.claim_turn(
                principal,
                request.thread_id,
                model=route.name,
                metadata=request.metadata,
                title=first_user,
            )
            try:
                messages = await self._check_exchange(request, messages, key)
                call = await self._gate.hold_chat(principal, context, route, request)
            except BaseException:  # invalid, over a limit: a thread created for nothing goes
                with anyio.CancelScope(shield=True):
                    await self._threads.discard_unused(principal, claim, key)
                raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                await lease.release()
            raise
        configurable: dict[str, Any] = {
            "temperature": request.temperature,
            "max_tokens": request.reply_limit or call.cap,
            "stop": request.stop_list,
            "thread_id": key,
            "tool_params": {k: v for k in TURN_PARAMS if (v := request.params.get(k)) is not None},
        }
        return _Turn(
            principal=principal,
            key=key,
            lease=lease,
            claim=claim,
            call=call,
            config=call.runnable_config(configurable),
            inputs={"messages": messages},
        )

    async def _check_exchange(
        self, request: ChatRequest, messages: list[AnyMessage], key: str
    ) -> list[AnyMessage]:
        """Each new ``tool`` message answers a call of this turn or of the thread's past.

        The new messages, less an assistant message whose calls the thread already holds:
        a client that resends the assistant's turn with its tool results (the ``openai``
        SDK's loop) does not store it twice.
        """
        if not any(m.role in ("assistant", "tool") for m in request.messages):
            return messages
        state = await self._graph.aget_state({"configurable": {"thread_id": key}})
        history = state.values.get("messages", []) if state else []
        earlier = {
            call["id"]
            for message in history
            if isinstance(message, AIMessage)
            for call in [*message.tool_calls, *message.invalid_tool_calls]
            if call.get("id")
        }
        check_exchange(request.messages, earlier=[i for i in earlier if i])
        fresh = [m for m in messages if not _held(m, earlier)]
        return fresh or messages

    async def _end(self, turn: _Turn, *, kept: bool) -> None:
        """End the turn once: stop its run, take it back unless kept, settle, unlock.

        Callers shield it: a departed client's cancellation must not cut it short.
        """
        if turn.ended:
            return
        turn.ended = True
        try:
            if turn.pump is not None:
                await turn.pump.cancel()  # a no-op for a run that has finished
            if not kept:
                abandon_calls(turn.config.get("callbacks"))  # a call stopped mid-way
                await self._rollback(turn.config, turn.inputs)
                await self._threads.discard_unused(turn.principal, turn.claim, turn.key)
        finally:
            turn.call.release()  # a no-op once the turn's usage settled the hold
            await turn.lease.release()

    async def _rollback(self, config: RunnableConfig, inputs: dict[str, Any]) -> None:
        """A failed turn leaves no dangling user message in the thread."""
        removals = [RemoveMessage(id=m.id) for m in inputs["messages"] if m.id]
        try:
            await self._graph.aupdate_state(config, {"messages": removals}, as_node="call_model")
        except (ValueError, KeyError):  # nothing was written yet
            pass

    async def _events(
        self, first: MessageChunk | None, turn: _Turn, include_usage: bool
    ) -> AsyncIterator[bytes]:
        route = turn.call.route
        pump = turn.pump
        assert pump is not None
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
                if calls := fmt.chunk_call_deltas(message):
                    yield fmt.chunk_event(cid=cid, model=model, created=created, delta=calls)
                usage = fmt.usage_dict(message) or usage
                finish = message.response_metadata.get("finish_reason") or finish
            finished = True
        except openai.OpenAIError as exc:
            error = map_openai_error(route.upstream.provider, exc)
            yield b"data: " + orjson.dumps(error.body()) + b"\n\n"
        finally:
            # Finished (the run has written the turn), failed, or the client went away:
            # stop the model call and take the unanswered turn back. Shielded: the
            # response's cancel scope would cancel these awaits too.
            with anyio.CancelScope(shield=True):
                await self._end(turn, kept=finished)
        if not finished:
            return
        yield fmt.chunk_event(cid=cid, model=model, created=created, finish=finish)
        if include_usage and usage is not None:
            yield fmt.chunk_event(cid=cid, model=model, created=created, usage=usage)
        yield fmt.DONE_EVENT
