"""The memory path of chat: one turn of a thread through the chat graph.

The conversation lives in LangGraph's checkpointer; the client sends only the new turn.
A turn that fails, or whose client goes away mid-stream, is taken back out of the thread
(no dangling user message), and a departed client stops the model call.
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
from pydantic import ValidationError

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
from services.threads import ThreadStore


class ThreadChat:
    """Runs turns of threads: ownership, limits, accounting, rollback."""

    def __init__(
        self,
        *,
        graph: CompiledStateGraph,
        threads: ThreadStore,
        gate: MeteringGate,
    ) -> None:
        self._graph = graph
        self._threads = threads
        self._gate = gate

    async def complete(
        self,
        principal: Principal,
        request: ChatRequest,
        route: ModelRoute,
        context: CallContext,
    ) -> bytes:
        """Run the turn; a ``chat.completion`` body."""
        call, config, inputs = await self._prepare(principal, request, route, context)
        async with call:
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
        self,
        principal: Principal,
        request: ChatRequest,
        route: ModelRoute,
        context: CallContext,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        """Start the turn; its SSE events (errors before the first token raise here).

        The limit hold stays open until the stream ends.
        """
        call, config, inputs = await self._prepare(principal, request, route, context)
        pump = TokenPump(self._graph, inputs, config)
        with upstream_errors(route.upstream.provider):
            try:
                first = await pump.next()
            except BaseException:
                await pump.cancel()
                await self._rollback(config, inputs)
                call.release()
                raise
        return self._events(first, pump, call, include_usage, config, inputs)

    async def _prepare(
        self,
        principal: Principal,
        request: ChatRequest,
        route: ModelRoute,
        context: CallContext,
    ) -> tuple[MeteredCall, RunnableConfig, dict[str, Any]]:
        """Check the messages, claim the thread, hold the limits, build the run config."""
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
        call = await self._gate.hold(
            principal,
            context,
            route,
            prompt=lambda: " ".join(str(m.content or "") for m in request.messages),
            messages=len(request.messages),
            reply_limit=request.reply_limit,
        )
        configurable: dict[str, Any] = {
            "temperature": request.temperature,
            "max_tokens": request.reply_limit or call.cap,
            "stop": request.stop_list,
            "thread_id": checkpoint_key(principal.org_id, request.thread_id),
        }
        return call, call.runnable_config(configurable), {"messages": messages}

    async def _rollback(self, config: RunnableConfig, inputs: dict[str, Any]) -> None:
        """A failed turn leaves no dangling user message in the thread."""
        removals = [RemoveMessage(id=m.id) for m in inputs["messages"] if m.id]
        try:
            await self._graph.aupdate_state(config, {"messages": removals}, as_node="call_model")
        except (ValueError, KeyError):  # nothing was written yet
            pass

    async def _events(
        self,
        first: MessageChunk | None,
        pump: TokenPump,
        call: MeteredCall,
        include_usage: bool,
        config: RunnableConfig,
        inputs: dict[str, Any],
    ) -> AsyncIterator[bytes]:
        route = call.route
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
            call.release()  # a no-op once the turn's usage settled the hold
        if not finished:
            return
        yield fmt.chunk_event(cid=cid, model=model, created=created, finish=finish)
        if include_usage and usage is not None:
            yield fmt.chunk_event(cid=cid, model=model, created=created, usage=usage)
        yield fmt.DONE_EVENT
