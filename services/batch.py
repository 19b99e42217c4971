"""``POST /api/chat/batch``: many chat completions in one call, each with its own result.

Items run with bounded concurrency through the same chat service as single requests, so
each is validated, routed, retried and accounted on its own; one bad item never fails
the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from auth.tokens import Principal
from core.errors import ApiError
from services.chat import ChatService
from services.gateway_types import ChatRequest

ParseItem = Callable[[Any], ChatRequest]
"""Maps one item of the batch onto a request (an ``ApiError`` for a bad one): the API's."""


async def run_batch(
    chat: ChatService,
    principal: Principal,
    items: list[Any],
    *,
    parse: ParseItem,
    concurrency: int,
) -> list[dict[str, Any]]:
    """Run every item; results keep the items' order and carry their index."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, item: Any) -> dict[str, Any]:
        try:
            request = parse(item)
        except ApiError as error:
            return _error(index, error.status_code, error.code, error.message)
        async with gate:
            try:
                body = await chat.complete(principal, request, flow="chat.batch")
            except ApiError as error:
                return _error(index, error.status_code, error.code, error.message)
        return {"index": index, "response": orjson.loads(body)}

    return list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))


def _error(index: int, status: int, code: str, message: str) -> dict[str, Any]:
    return {"index": index, "error": {"status": status, "code": code, "message": message}}
