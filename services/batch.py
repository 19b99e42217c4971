"""``POST /api/chat/batch``: many chat completions in one call, each with its own result.

Items run with bounded concurrency through the same chat service as single requests, so
each is validated, routed, retried and accounted on its own; one bad item never fails
the others. Items of one thread are turns of one conversation: they run one after the
other, in the batch's order (each turn sees the ones before it).
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
    results: list[dict[str, Any] | None] = [None] * len(items)
    runs: dict[str | int, list[tuple[int, ChatRequest]]] = {}
    for index, item in enumerate(items):
        try:
            request = parse(item)
        except ApiError as error:
            results[index] = _error(index, error.status_code, error.code, error.message)
            continue
        key: str | int = request.thread_id if request.thread_id is not None else index
        runs.setdefault(key, []).append((index, request))

    async def one(index: int, request: ChatRequest) -> dict[str, Any]:
        async with gate:
            try:
                body = await chat.complete(principal, request, flow="chat.batch")
            except ApiError as error:
                return _error(index, error.status_code, error.code, error.message)
        return {"index": index, "response": orjson.loads(body)}

    async def in_order(turns: list[tuple[int, ChatRequest]]) -> None:
        for index, request in turns:
            results[index] = await one(index, request)

    await asyncio.gather(*(in_order(turns) for turns in runs.values()))
    return [result for result in results if result is not None]


def _error(index: int, status: int, code: str, message: str) -> dict[str, Any]:
    return {"index": index, "error": {"status": status, "code": code, "message": message}}
