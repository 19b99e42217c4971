"""The Responses API use case behind ``/api/responses``: a chat call in other clothes.

A request becomes a :class:`ChatRequest` (``services.responses.items``) and goes through
``ChatService`` with the flow ``responses``: the same checks, model resolution with the
org's key, limit hold, relay, response cache and one usage event on the route
``responses``. The chat answer (or stream) is re-told as a ``response`` object (or typed
events, ``services.responses.stream``). With ``store`` (the default) the finished response
and the conversation it answered are kept (``services.responses.store``), so
``previous_response_id`` continues from it; ``store: false`` keeps nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from auth.tokens import Principal
from services.chat import ChatService
from services.gateway_types import ChatRequest, parse_messages
from services.responses import items as it
from services.responses.objects import ResponseShell
from services.responses.request import ResponseRequest
from services.responses.store import ResponseStore
from services.responses.stream import translate

FLOW = "responses"
"""The usage route of every call made for ``/api/responses``."""


class ResponsesService:
    """Creates responses through the chat path; reads and deletes the stored ones."""

    def __init__(self, *, chat: ChatService, store: ResponseStore, default_model: str) -> None:
        self._chat = chat
        self._store = store
        self._default_model = default_model

    async def create(self, principal: Principal, request: ResponseRequest) -> dict[str, Any]:
        """The finished ``response`` object (stored unless ``store`` is false)."""
        chat, earlier, items = await self._prepare(principal, request)
        shell = ResponseShell(request, model=self._model(request))  # created_at: now
        answer = orjson.loads(await self._chat.complete(principal, chat, flow=FLOW))
        choice = (answer.get("choices") or [{}])[0]
        status, incomplete = it.ending(choice.get("finish_reason"))
        item_status = "incomplete" if status == "incomplete" else "completed"
        body = shell.body(
            status=status,
            output=it.output_items(choice.get("message") or {}, status=item_status),
            usage=it.usage(answer.get("usage")),
            incomplete=incomplete,
        )
        if request.store:
            await self._store.save(principal, earlier=earlier, items=items, response=body)
        return body

    async def stream(self, principal: Principal, request: ResponseRequest) -> AsyncIterator[bytes]:
        """The typed events; request and upstream errors raise before the first one."""
        chat, earlier, items = await self._prepare(principal, request)
        events = await self._chat.stream(principal, chat, flow=FLOW)
        shell = ResponseShell(request, model=self._model(request))

        async def finished(body: dict[str, Any]) -> None:
            if request.store:
                await self._store.save(principal, earlier=earlier, items=items, response=body)

        return translate(events, shell, finished)

    async def get(self, principal: Principal, response_id: str) -> dict[str, Any]:
        """A stored response (404 when unknown or another org's or user's)."""
        return await self._store.get(principal, response_id)

    async def input_items(
        self, principal: Principal, response_id: str, *, limit: int, order: str, after: str | None
    ) -> dict[str, Any]:
        """A page of a stored response's input items (``order`` ``asc`` or ``desc``)."""
        items = await self._store.input_items(principal, response_id)
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise it.invalid("after", f"'{after}' is not an input item of this response")
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }

    async def delete(self, principal: Principal, response_id: str) -> dict[str, Any]:
        """Forget a stored response (404 when unknown or another org's or user's)."""
        await self._store.delete(principal, response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    # -- the chat request ---------------------------------------------------------------------
    async def _prepare(
        self, principal: Principal, request: ResponseRequest
    ) -> tuple[ChatRequest, list[dict[str, Any]], list[dict[str, Any]]]:
        """The chat request; the earlier items and this input as they are to be stored."""
        items = it.input_items(request.input)
        tools = it.chat_tools(request.tools)
        params: dict[str, Any] = {
            "tools": tools,
            "tool_choice": it.chat_tool_choice(request.tool_choice, tools),
            "parallel_tool_calls": request.parallel_tool_calls if tools else None,
            "response_format": it.response_format(request.text),
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_output_tokens,
            "user": request.user,
        }
        builder = it.MessageBuilder(request.instructions)
        earlier: list[dict[str, Any]] = []
        if request.previous_response_id is not None:
            continuation = await self._store.continuation(principal, request.previous_response_id)
            earlier = continuation.items
            builder.add(earlier, where="previous_response_id")
        builder.add(items)
        chat = ChatRequest(
            messages=parse_messages(builder.messages),
            model=request.model,
            params={k: v for k, v in params.items() if v is not None},
            include_usage=True,
            cache=request.cache,
        )
        return chat, earlier, it.stored_items(items)

    def _model(self, request: ResponseRequest) -> str:
        return request.model or self._default_model
