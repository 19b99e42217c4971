"""Ownership of chat threads: a thread belongs to one org and one user.

The thread's messages live in LangGraph's checkpointer under ``<org>/<thread id>``; this
table records who owns it, so another org (or another user) gets a 404 and never a
glimpse of the conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth.tokens import Principal
from core.errors import ApiError
from db.base import utcnow
from db.models import ChatThread, checkpoint_key, rag_checkpoint_key


def _not_found(thread_id: str) -> ApiError:
    return ApiError(404, "thread_not_found", f"thread '{thread_id}' not found")


class ThreadStore:
    """Create, find, list and delete an org's threads."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], checkpointer: BaseCheckpointSaver
    ) -> None:
        self._sessions = sessions
        self._checkpointer = checkpointer

    async def claim(
        self,
        principal: Principal,
        thread_id: str,
        *,
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
        title: str | None = None,
    ) -> ChatThread:
        """The caller's thread ``thread_id``, created on first use; 404 if someone else's."""
        async with self._sessions() as session:
            thread = await session.get(ChatThread, (principal.org_id, thread_id))
            if thread is None:
                thread = ChatThread(
                    org_id=principal.org_id,
                    id=thread_id,
                    user_id=principal.user_id,
                    model=model,
                    title=title[:200] if title else None,
                    metadata_=metadata or {},
                )
                session.add(thread)
                try:
                    await session.commit()
                except IntegrityError:  # created concurrently by another request
                    await session.rollback()
                    return await self.claim(principal, thread_id, model=model, metadata=metadata)
                return thread
            if thread.user_id != principal.user_id:
                raise _not_found(thread_id)
            thread.updated_at = utcnow()
            if model:
                thread.model = model
            if metadata:
                thread.metadata_ = {**thread.metadata_, **metadata}
            await session.commit()
            return thread

    async def get(self, principal: Principal, thread_id: str) -> ChatThread:
        """The caller's thread, or 404."""
        async with self._sessions() as session:
            thread = await session.get(ChatThread, (principal.org_id, thread_id))
        if thread is None or thread.user_id != principal.user_id:
            raise _not_found(thread_id)
        return thread

    async def list(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[Sequence[ChatThread], int]:
        """The caller's threads, most recently used first, and their total count."""
        owner = (ChatThread.org_id == principal.org_id) & (ChatThread.user_id == principal.user_id)
        async with self._sessions() as session:
            total = await session.scalar(select(func.count()).select_from(ChatThread).where(owner))
            rows = await session.scalars(
                select(ChatThread)
                .where(owner)
                .order_by(ChatThread.updated_at.desc(), ChatThread.id)
                .limit(limit)
                .offset(offset)
            )
            return rows.all(), int(total or 0)

    async def delete(self, principal: Principal, thread_id: str) -> None:
        """Delete the thread and its checkpointed messages; 404 if not the caller's.

        The row's delete decides: of concurrent deletes exactly one removes it (the others
        find nothing and answer 404). Its transaction commits only after the messages are
        gone, so a failure leaves the thread whole (deleted again later), never messages
        without an owner.
        """
        async with self._sessions() as session:
            result = await session.execute(
                delete(ChatThread).where(
                    ChatThread.org_id == principal.org_id,
                    ChatThread.id == thread_id,
                    ChatThread.user_id == principal.user_id,
                )
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                raise _not_found(thread_id)
            await self._checkpointer.adelete_thread(checkpoint_key(principal.org_id, thread_id))
            await self._checkpointer.adelete_thread(rag_checkpoint_key(principal.org_id, thread_id))
            await session.commit()
