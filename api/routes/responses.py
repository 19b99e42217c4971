"""The OpenAI Responses API: ``POST /api/responses``, ``GET`` and ``DELETE /api/responses/{id}``."""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from api.deps import ServicesDep
from api.responses_schemas import ResponseCreate
from auth.deps import CurrentPrincipal

router = APIRouter(prefix="/responses", tags=["responses"])

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Bad request (input items, tools, text.format, unknown model)"},
    401: {"description": "Missing or invalid token"},
    404: {"description": "previous_response_id not found"},
    429: {"description": "Over a limit, or upstream rate limit"},
    502: {"description": "Upstream failure"},
    504: {"description": "Upstream timeout"},
}
_NOT_FOUND: dict[int | str, dict[str, str]] = {
    401: {"description": "Missing or invalid token"},
    404: {"description": "No such response (or not the caller's)"},
}


@router.post("", operation_id="responses-create", responses=_ERRORS)
async def create_response(
    body: ResponseCreate, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """A ``response`` object, or with ``stream: true`` its typed server-sent events."""
    request = body.to_request()
    if body.stream:
        events = await services.responses.stream(principal, request)
        return StreamingResponse(events, media_type="text/event-stream", headers=_SSE_HEADERS)
    answer = await services.responses.create(principal, request)
    return Response(orjson.dumps(answer), media_type="application/json")


@router.get("/{response_id}", operation_id="responses-get", responses=_NOT_FOUND)
async def get_response(
    response_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """A stored response, as it was answered."""
    answer = await services.responses.get(principal, response_id)
    return Response(orjson.dumps(answer), media_type="application/json")


@router.get(
    "/{response_id}/input_items", operation_id="responses-input-items", responses=_NOT_FOUND
)
async def list_input_items(
    response_id: str,
    principal: CurrentPrincipal,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> Response:
    """A page of a stored response's own input items (each with its id), newest first."""
    page = await services.responses.input_items(
        principal, response_id, limit=limit, order=order, after=after
    )
    return Response(orjson.dumps(page), media_type="application/json")


@router.delete("/{response_id}", operation_id="responses-delete", responses=_NOT_FOUND)
async def delete_response(
    response_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """Forget a stored response (``previous_response_id`` can no longer name it)."""
    answer = await services.responses.delete(principal, response_id)
    return Response(orjson.dumps(answer), media_type="application/json")
