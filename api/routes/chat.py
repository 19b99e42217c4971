"""Chat completions, OpenAI-compatible: ``POST /api/chat/completions`` and ``/api/chat/stream``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from api.deps import ServicesDep
from api.schemas import BatchRequest, BatchResponse, ChatCompletionRequest
from auth.deps import CurrentPrincipal
from core.errors import ApiError
from services.batch import run_batch
from services.gateway_types import ChatRequest

router = APIRouter(prefix="/chat", tags=["chat"])

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Bad request (unknown model, unsupported parameter)"},
    401: {"description": "Missing or invalid token"},
    404: {"description": "Thread not found"},
    429: {"description": "Upstream rate limit"},
    502: {"description": "Upstream failure"},
    504: {"description": "Upstream timeout"},
}


@router.post("/completions", operation_id="chat-completions", responses=_ERRORS)
async def chat_completions(
    body: ChatCompletionRequest, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """OpenAI Chat Completions: a JSON answer, or SSE chunks with ``stream: true``."""
    if body.stream:
        return await _stream(body, principal, services, flow="chat.completions")
    content = await services.chat.complete(
        principal, body.to_chat_request(), flow="chat.completions"
    )
    return Response(content, media_type="application/json")


@router.post("/stream", operation_id="chat-stream", responses=_ERRORS)
async def chat_stream(
    body: ChatCompletionRequest, principal: CurrentPrincipal, services: ServicesDep
) -> StreamingResponse:
    """The same body, always answered as OpenAI-style SSE chunks (for the front end)."""
    return await _stream(body, principal, services, flow="chat.stream")


async def _stream(
    body: ChatCompletionRequest, principal: CurrentPrincipal, services: ServicesDep, *, flow: str
) -> StreamingResponse:
    events = await services.chat.stream(principal, body.to_chat_request(), flow=flow)
    return StreamingResponse(events, media_type="text/event-stream", headers=_SSE_HEADERS)


@router.post("/batch", response_model=BatchResponse, operation_id="chat-batch", responses=_ERRORS)
async def chat_batch(
    body: BatchRequest, principal: CurrentPrincipal, services: ServicesDep
) -> BatchResponse:
    """Many completions at once (bounded concurrency); each item gets a response or an error."""
    limit = services.settings.batch_max_items
    if len(body.requests) > limit:
        raise ApiError(413, "batch_too_large", f"a batch holds at most {limit} requests")
    results = await run_batch(
        services.chat,
        principal,
        body.requests,
        parse=_batch_item,
        concurrency=services.settings.batch_concurrency,
    )
    return BatchResponse.model_validate({"results": results})


def _batch_item(item: Any) -> ChatRequest:
    """One batch item as a chat request (422 when invalid, 400 when it asks to stream)."""
    try:
        request = ChatCompletionRequest.model_validate(item)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        raise ApiError(422, "invalid_request", f"{where}: {first['msg']}") from exc
    if request.stream:
        raise ApiError(400, "unsupported_parameter", "batch items cannot stream")
    return request.to_chat_request()
