"""Ownership of chat threads: a thread belongs to one org and one user.

The thread's messages live in LangGraph's checkpointer under ``<org>/<thread id>``; this
table records who owns it, so another org (or another user) gets a 404 and never a
glimpse of the conversation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth.tokens import Principal
from core.errors import ApiError
from db.base import utcnow
from db.models import ChatThread, checkpoint_key, rag_checkpoint_key
from services.turn_locks import TurnLocks, hold_turn


@dataclass(frozen=True, slots=True)
class ThreadClaim:
    """A turn's claim on its thread: the thread, and whether this turn created it."""

    thread: ChatThread
    created: bool


def _not_found(thread_id: str) -> ApiError:
    return ApiError(404, "thread_not_found", f"thread '{thread_id}' not found")


class ThreadStore:
    """Create, find, list and delete an org's threads."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        checkpointer: BaseCheckpointSaver,
        *,
        locks: TurnLocks | None = None,
    ) -> None:
        self._sessions = sessions
        self._checkpointer = checkpointer
        self._locks = locks

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
        claim = await self.claim_turn(
            principal, thread_id, model=model, metadata=metadata, title=title
        )
        return claim.thread

    async def claim_turn(
        self,
        principal: Principal,
        thread_id: str,
        *,
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
        title: str | None = None,
    ) -> ThreadClaim:
        """Like :meth:`claim`, and whether this call created the thread.

        A thread is created with ``updated_at == created_at``; every later claim moves
        ``updated_at``, which is how :meth:`discard_unused` knows nobody else used it.
        """
        async with self._sessions() as session:
            thread = await session.get(ChatThread, (principal.org_id, thread_id))
            if thread is None:
                now = utcnow()
                thread = ChatThread(
                    org_id=principal.org_id,
                    id=thread_id,
                    user_id=principal.user_id,
                    model=model,
                    title=title[:200] if title else None,
                    metadata_=metadata or {},
                    created_at=now,
                    updated_at=now,
                )
                session.add(thread)
                try:
                    await session.commit()
                except IntegrityError:  # created concurrently by another request
                    await session.rollback()
                    return await self.claim_turn(
                        principal, thread_id, model=model, metadata=metadata
                    )
                return ThreadClaim(thread, created=True)
            if thread.user_id != principal.user_id:
                raise _not_found(thread_id)
            thread.updated_at = utcnow()
            if model:
                thread.model = model
            if metadata:
                thread.metadata_ = {**thread.metadata_, **metadata}
            await session.commit()
            return ThreadClaim(thread, created=False)

    async def discard_unused(self, principal: Principal, claim: ThreadClaim, key: str) -> bool:
        """Take back a thread its first turn created, when that turn was not kept.

        Called by the rollback of a failed or abandoned turn, under the thread's turn lock
        (``key``: the turn's checkpoint key). The row goes only if this turn created it and
        no other turn has claimed it since (its ``updated_at`` never moved), in one
        conditional delete, so a concurrent turn of the owner keeps its thread; then the
        turn's emptied checkpoint goes too. True when the thread was taken back.
        """
        if not claim.created:
            return False
        thread = claim.thread
        async with self._sessions() as session:
            result = await session.execute(
                delete(ChatThread).where(
                    ChatThread.org_id == principal.org_id,
                    ChatThread.id == thread.id,
                    ChatThread.user_id == principal.user_id,
                    ChatThread.updated_at == ChatThread.created_at,
                )
            )
            await session.commit()
        if not getattr(result, "rowcount", 0):
            return False
        await self._checkpointer.adelete_thread(key)
        return True

    async def discard_if_empty(self, principal: Principal, claim: ThreadClaim, key: str) -> None:
        """After a LangServe run that created its thread: take it back if it was never answered.

        (The REST turns know whether they were kept; a LangServe run's failure or
        cancellation ends inside LangServe, so its request's end asks the checkpoint.)
        """
        if not claim.created:
            return
        saved = await self._checkpointer.aget_tuple({"configurable": {"thread_id": key}})
        messages = saved.checkpoint["channel_values"].get("messages") if saved else None
        if not any(getattr(m, "type", None) == "ai" for m in messages or ()):  # never answered
            await self.discard_unused(principal, claim, key)

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
        without an owner. It waits for a running turn of the thread (chat or knowledge) to
        end, so no turn writes into a deleted thread (409 ``thread_busy`` after the wait).
        """
        keys = (
            checkpoint_key(principal.org_id, thread_id),
            rag_checkpoint_key(principal.org_id, thread_id),
        )
        async with contextlib.AsyncExitStack() as turns:
            if self._locks is not None:
                for key in keys:  # the order every holder of both would use
                    await turns.enter_async_context(hold_turn(self._locks, key))
            await self._delete(principal, thread_id, keys)

    async def _delete(self, principal: Principal, thread_id: str, keys: tuple[str, str]) -> None:
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
            for key in keys:
                await self._checkpointer.adelete_thread(key)
            await session.commit()
