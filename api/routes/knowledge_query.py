"""Questions answered from the knowledge base: ``POST /api/knowledge/query`` (RAG).

The route only translates HTTP to ``services.knowledge_query``; the org comes from the token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from api.knowledge_schemas import KnowledgeQueryRequest, KnowledgeQueryResponse
from auth.deps import CurrentPrincipal
from services.knowledge_query import KnowledgeQuery

router = APIRouter(prefix="/knowledge", tags=["knowledge"])

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Unknown model"},
    401: {"description": "Missing or invalid token"},
    404: {"description": "Thread or collection not found"},
    422: {"description": "Invalid body or filter"},
    429: {"description": "Limit exceeded, or upstream rate limit"},
    502: {"description": "Upstream failure"},
}


async def get_knowledge_query(request: Request) -> KnowledgeQuery:
    """The RAG use case (built in the app's lifespan)."""
    service: KnowledgeQuery = request.app.state.services.knowledge_query
    return service


KnowledgeQueryDep = Annotated[KnowledgeQuery, Depends(get_knowledge_query)]


@router.post(
    "/query",
    response_model=KnowledgeQueryResponse,
    operation_id="knowledge-query",
    responses={
        **_ERRORS,
        200: {
            "description": "The answer (JSON), or with `stream: true` SSE events: "
            '`{"type": "token", "content"}`..., `{"type": "citations", "citations"}`, '
            '`{"type": "usage", "usage", "model"}`, then `[DONE]`.',
            "content": {"text/event-stream": {}},
        },
    },
)
async def query(
    body: KnowledgeQueryRequest, principal: CurrentPrincipal, service: KnowledgeQueryDep
) -> Any:
    """Answer a question from the org's documents, with citations (``[n]`` in the answer).

    When no document is relevant the answer says so instead of guessing. With
    ``thread_id``, follow-up questions are rewritten from the conversation before searching.
    """
    if body.stream:
        events = await service.stream(principal, body.to_question(), flow="knowledge.query")
        return StreamingResponse(events, media_type="text/event-stream", headers=_SSE_HEADERS)
    return KnowledgeQueryResponse.model_validate(
        await service.answer(principal, body.to_question(), flow="knowledge.query")
    )
