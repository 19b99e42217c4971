"""The evaluations' rows: every SQL statement of prompt evaluations.

The row is the evaluation's only durable state (the job queue may lose its place in line,
never a row). Its status moves ``queued`` → ``running`` → ``done`` / ``failed``, or to
``cancelled`` from either active state, and only through :meth:`EvaluationStore.set_status`:
one conditional ``UPDATE ... WHERE status IN (<allowed>)`` per move (:data:`ALLOWED_FROM`).
That condition is the idempotency guard of the job body: a move the row no longer allows
(a cancel that lost to the end of the run, a finished job delivered again, a job that
finds its row cancelled) changes nothing and answers False, and the caller stops. It holds
under any number of instances, since the database decides.

One case it does not tell apart: ``running`` → ``running``. A restart re-queues rows left
``running`` (their job died with the process), so claiming a running row is allowed; two
live deliveries of the same job would then both run it (results are the last writer's).
A queue that redelivers while a job is alive needs an attempt or lease column for that.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import ApiError
from db.models import PromptEvaluation
from db.session import session_scope

Status = Literal["queued", "running", "done", "failed", "cancelled"]
Move = Literal["running", "done", "failed", "cancelled"]
"""The statuses a row can be moved to (``queued`` is only ever its first)."""

ACTIVE: tuple[Status, ...] = ("queued", "running")
ALLOWED_FROM: Mapping[Move, tuple[Status, ...]] = {
    "running": ACTIVE,  # the job claims its row; a restart's re-queue claims it again
    "cancelled": ACTIVE,  # a user's cancel, before or during the run
    "done": ("running",),  # only the job that claimed the row ends it ...
    "failed": ("running",),  # ... and not once it was cancelled
}
"""Move → the statuses it may come from: the guarded transitions of an evaluation."""


def _now() -> datetime:
    return datetime.now(UTC)


class EvaluationStore:
    """``ahc_prompt_evaluations``: create, read, page, and the guarded status moves."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(
        self,
        *,
        org_id: str,
        template_name: str,
        versions: list[int],
        request: dict[str, Any],
        total_items: int,
        created_by: str,
    ) -> PromptEvaluation:
        """Store a new evaluation, ``queued``."""
        row = PromptEvaluation(
            id=str(uuid.uuid4()),
            org_id=org_id,
            template_name=template_name,
            versions=versions,
            request=request,
            status="queued",
            total_items=total_items,
            done_items=0,
            created_by=created_by,
            created_at=_now(),
        )
        async with session_scope(self._sessions) as session:
            session.add(row)
        return row

    async def find(self, evaluation_id: str) -> PromptEvaluation | None:
        """The row by id, whoever owns it (the job's read)."""
        async with self._sessions() as session:
            return await session.get(PromptEvaluation, evaluation_id)

    async def get(self, org_id: str, name: str, evaluation_id: str) -> PromptEvaluation:
        """The org's evaluation of template ``name`` (404 otherwise)."""
        row = await self.find(evaluation_id)
        if row is None or row.org_id != org_id or row.template_name != name:
            raise ApiError(
                404, "evaluation_not_found", f"no evaluation {evaluation_id!r} of {name!r}"
            )
        return row

    async def page(
        self,
        org_id: str,
        name: str,
        *,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[PromptEvaluation], int]:
        """A page of the template's evaluations, newest first, and how many there are."""
        where = [PromptEvaluation.org_id == org_id, PromptEvaluation.template_name == name]
        if status is not None:
            where.append(PromptEvaluation.status == status)
        async with self._sessions() as session:
            total = await session.scalar(
                select(func.count()).select_from(PromptEvaluation).where(*where)
            )
            result = await session.execute(
                select(PromptEvaluation)
                .where(*where)
                .order_by(PromptEvaluation.created_at.desc(), PromptEvaluation.id)
                .limit(limit)
                .offset(offset)
            )
            return list(result.scalars()), int(total or 0)

    async def active(self) -> list[PromptEvaluation]:
        """Every ``queued`` or ``running`` evaluation, oldest first (what a restart re-queues)."""
        async with self._sessions() as session:
            result = await session.execute(
                select(PromptEvaluation)
                .where(PromptEvaluation.status.in_(ACTIVE))
                .order_by(PromptEvaluation.created_at)
            )
            return list(result.scalars())

    async def set_status(
        self,
        evaluation_id: str,
        status: Move,
        *,
        error: str | None = None,
        results: dict[str, Any] | None = None,
    ) -> bool:
        """Move the row to ``status`` if :data:`ALLOWED_FROM` allows it; False when not.

        ``running`` stamps ``started_at``; the other moves stamp ``finished_at`` and set
        ``error`` (None clears it). ``results`` is written with the move when given.
        """
        values: dict[str, Any] = {"status": status}
        if status == "running":
            values["started_at"] = _now()
        else:
            values["finished_at"] = _now()
            values["error"] = error
        if results is not None:
            values["results"] = results
        async with session_scope(self._sessions) as session:
            outcome = await session.execute(
                update(PromptEvaluation)
                .where(
                    PromptEvaluation.id == evaluation_id,
                    PromptEvaluation.status.in_(ALLOWED_FROM[status]),
                )
                .values(**values)
            )
        return bool(getattr(outcome, "rowcount", 0))

    async def write_progress(self, evaluation_id: str, done: int) -> bool:
        """Record progress; False when the row is no longer running (cancelled, deleted)."""
        async with session_scope(self._sessions) as session:
            outcome = await session.execute(
                update(PromptEvaluation)
                .where(PromptEvaluation.id == evaluation_id, PromptEvaluation.status == "running")
                .values(done_items=done)
            )
        return bool(getattr(outcome, "rowcount", 0))
