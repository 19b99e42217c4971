"""``ahc_responses``: the stored responses, each private to its org and user.

Every read and delete is keyed by (id, org, user): another org's or user's response does
not exist for the caller (404), exactly as an unknown id.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth.tokens import Principal
from core.errors import ApiError
from db.base import utcnow
from db.models import StoredResponse
from db.session import session_scope


@dataclass(frozen=True, slots=True)
class Continuation:
    """What a response continues from: the items the model sees before the new input."""

    response_id: str
    items: list[dict[str, Any]]


def not_found(response_id: str, param: str | None = None) -> ApiError:
    """The 404 of an unknown (or someone else's) response."""
    details = {"param": param} if param else None
    return ApiError(404, "response_not_found", f"no response '{response_id}' here", details=details)


class ResponseStore:
    """Create, read, continue from and delete stored responses."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def save(
        self,
        principal: Principal,
        *,
        earlier: list[dict[str, Any]],
        items: list[dict[str, Any]],
        response: dict[str, Any],
    ) -> None:
        """Keep a finished response and the conversation it answered; returns once committed.

        ``earlier``: the items it continued from (``previous_response_id``), ``items``: its
        own input.

        Group commit: the saves that arrive while a transaction is being written go into
        the next one together (one insert of many rows, one commit), so concurrent
        responses share the cost of a transaction instead of paying one each.
        """
        row = {
            "id": response["id"],
            "org_id": principal.org_id,
            "user_id": principal.user_id,
            "model": response["model"],
            "previous_response_id": response.get("previous_response_id"),
            "conversation": [*earlier, *items],
            "input_count": len(items),
            "response": response,
            "created_at": utcnow(),
        }
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        await asyncio.shield(done)  # a caller that gives up does not cancel the others' write

    async def _write_pending(self) -> None:
        """Write what is pending, batch after batch, until nothing is."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with session_scope(self._sessions) as session:
                    await session.execute(insert(StoredResponse), [row for row, _ in batch])
            except BaseException as exc:  # each waiting caller gets the error
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise  # cancelled (shutdown): stop
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def get(self, principal: Principal, response_id: str) -> dict[str, Any]:
        """The response object (404 when unknown or not the caller's)."""
        row = await self._row(principal, response_id)
        if row is None:
            raise not_found(response_id)
        return row.response

    async def continuation(self, principal: Principal, response_id: str) -> Continuation:
        """The conversation so far: the stored one, then the response's own output."""
        row = await self._row(principal, response_id)
        if row is None:
            raise not_found(response_id, "previous_response_id")
        output = [dict(item) for item in row.response.get("output") or []]
        return Continuation(response_id, [*row.conversation, *output])

    async def input_items(self, principal: Principal, response_id: str) -> list[dict[str, Any]]:
        """A response's own input items, oldest first (404 when unknown or not the caller's)."""
        row = await self._row(principal, response_id)
        if row is None:
            raise not_found(response_id)
        count = row.input_count
        return [dict(item) for item in row.conversation[len(row.conversation) - count :]]

    async def delete(self, principal: Principal, response_id: str) -> None:
        """Forget a response (404 when unknown or not the caller's)."""
        async with session_scope(self._sessions) as session:
            result = await session.execute(
                delete(StoredResponse).where(*_owned(principal, response_id))
            )
        if not getattr(result, "rowcount", 0):
            raise not_found(response_id)

    async def _row(self, principal: Principal, response_id: str) -> StoredResponse | None:
        async with self._sessions() as session:
            found: StoredResponse | None = await session.scalar(
                select(StoredResponse).where(*_owned(principal, response_id))
            )
            return found


def _owned(principal: Principal, response_id: str) -> tuple[Any, ...]:
    return (
        StoredResponse.id == response_id,
        StoredResponse.org_id == principal.org_id,
        StoredResponse.user_id == principal.user_id,
    )
