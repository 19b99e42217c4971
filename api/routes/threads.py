"""Chat threads of the caller: ``GET /api/chat/threads``, ``GET|DELETE .../{id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from api.deps import ServicesDep
from api.schemas import THREAD_ID_PATTERN, ThreadDetail, ThreadMessage, ThreadPublic, ThreadsPublic
from auth.deps import CurrentPrincipal
from db.models import ChatThread, checkpoint_key, rag_checkpoint_key
from services.openai_format import to_openai_message

router = APIRouter(prefix="/chat/threads", tags=["threads"])

ThreadId = Annotated[str, Path(pattern=THREAD_ID_PATTERN)]


def _public(thread: ChatThread) -> ThreadPublic:
    return ThreadPublic(
        id=thread.id,
        title=thread.title,
        model=thread.model,
        metadata=thread.metadata_,
        created_at=thread.created_at,
        updated_at=thread.updated_at,
    )


@router.get("", response_model=ThreadsPublic, operation_id="threads-list")
async def list_threads(
    principal: CurrentPrincipal,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ThreadsPublic:
    """The caller's threads, most recently used first."""
    rows, count = await services.threads.list(principal, limit=limit, offset=offset)
    return ThreadsPublic(data=[_public(t) for t in rows], count=count)


@router.get("/{thread_id}", response_model=ThreadDetail, operation_id="threads-get")
async def get_thread(
    thread_id: ThreadId, principal: CurrentPrincipal, services: ServicesDep
) -> ThreadDetail:
    """A thread with its full conversation (trimming affects only what the model sees)."""
    thread = await services.threads.get(principal, thread_id)
    chat = await _messages(services.chat_graph, checkpoint_key(principal.org_id, thread_id))
    knowledge = await _messages(services.rag_graph, rag_checkpoint_key(principal.org_id, thread_id))
    return ThreadDetail(**_public(thread).model_dump(), messages=chat, knowledge_messages=knowledge)


async def _messages(graph: CompiledStateGraph, key: str) -> list[ThreadMessage]:
    """The messages the graph's checkpointer holds under ``key``."""
    config: RunnableConfig = {"configurable": {"thread_id": key}}
    state = await graph.aget_state(config)
    messages = state.values.get("messages", []) if state else []
    return [ThreadMessage(**to_openai_message(m)) for m in messages]


@router.delete(
    "/{thread_id}",
    status_code=204,
    operation_id="threads-delete",
    responses={
        404: {"description": "Thread not found"},
        409: {"description": "thread_busy: a turn of the thread ran too long"},
    },
)
async def delete_thread(
    thread_id: ThreadId, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """Delete the thread and its messages."""
    await services.threads.delete(principal, thread_id)
    return Response(status_code=204)
