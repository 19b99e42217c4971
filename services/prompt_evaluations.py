"""Prompt evaluations: run template versions over a dataset, score them, store the numbers.

``POST /api/prompt-templates/{name}/evaluate`` checks everything up front (versions,
evaluators, ``expected`` where an evaluator needs it, every item rendered with every
version, models), stores the evaluation ``queued`` and enqueues one job (task
``prompt.evaluate``, job id = evaluation id) through the job interface. The job runs each
(item, version) pair, items interleaved across versions, at most ``concurrency`` at once,
and stores per-version summaries and per-item outputs and scores (``prompts.evaluators``).

Every model and embedding call goes through LangChain with the accounting callback: one
usage event per call, route ``prompt.evaluate``, the template's name and version, and the
evaluation id as ``request_id``. Calls of the evaluated versions and of the judge hold
against the org's and the creator's limits like any other call (``LimitEnforcer.hold``);
a denied hold stops the evaluation: it ends ``failed``, naming the limit, with the results
of what ran. The org's own OpenAI key is used when it has one.

State is the row's: a restart re-queues evaluations left ``queued`` or ``running``
(:meth:`PromptEvaluations.recover`), which run again from the start. A cancel marks the row
``cancelled`` and stops the job; a job that sees its row cancelled (by another instance)
stops at its next progress write.

This module is the facade the routes use; the work is split by job:
``prompts.evaluation_plan`` (the request and its pure checks),
``services.evaluations.planner`` (what the checks need: templates, keys, routes),
``services.evaluations.store`` (every SQL statement, the guarded status moves),
``services.evaluations.runner`` (the job body, registered by ``services.job_table``) and
``services.evaluations.report`` (summaries and the best versions).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth.tokens import Principal
from core.errors import ApiError
from db.models import PromptEvaluation
from jobs.queue import Handler, JobQueue
from prompts.evaluation_plan import DatasetItem, EvaluationDraft
from providers.embeddings import EmbeddingRegistry
from services.evaluations.planner import EvaluationPlanner
from services.evaluations.runner import EVALUATE_TASK, EvaluationRunner
from services.evaluations.store import EvaluationStore
from services.metering import MeteringGate
from services.prompt_templates import PromptTemplates

__all__ = ["EVALUATE_TASK", "DatasetItem", "EvaluationDraft", "PromptEvaluations"]


class PromptEvaluations:
    """Evaluations of every org's templates: start, read, page, cancel, recover."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        templates: PromptTemplates,
        gate: MeteringGate,
        embeddings: EmbeddingRegistry,
        jobs: JobQueue,
    ) -> None:
        self._store = EvaluationStore(sessions)
        self._planner = EvaluationPlanner(templates=templates, gate=gate, embeddings=embeddings)
        self._runner = EvaluationRunner(store=self._store, planner=self._planner, gate=gate)
        self._jobs = jobs

    @property
    def job_handler(self) -> Handler:
        """The body of task :data:`EVALUATE_TASK` (``services.job_table`` registers it)."""
        return self._runner.run

    async def abandon_job(self, payload: dict[str, Any], reason: str) -> None:
        """The queue gave up on the job: the evaluation ends ``failed``, saying why."""
        await self._store.set_status(
            str(payload["evaluation_id"]), "failed", error=f"the evaluation {reason}"
        )

    async def start(
        self, principal: Principal, name: str, draft: EvaluationDraft
    ) -> PromptEvaluation:
        """Check the evaluation, store it ``queued`` and enqueue its job."""
        plan = await self._planner.plan(principal.org_id, name, draft)
        row = await self._store.create(
            org_id=principal.org_id,
            template_name=plan.name,
            versions=plan.versions,
            request=draft.to_json(plan.evaluators, plan.versions),
            total_items=len(plan.targets) * len(draft.dataset),
            created_by=principal.user_id,
        )
        await self._enqueue(row)
        return row

    async def get(self, org_id: str, name: str, evaluation_id: str) -> PromptEvaluation:
        """The org's evaluation of template ``name`` (404 otherwise)."""
        return await self._store.get(org_id, name, evaluation_id)

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
        return await self._store.page(org_id, name, status=status, limit=limit, offset=offset)

    async def cancel(self, principal: Principal, name: str, evaluation_id: str) -> PromptEvaluation:
        """Stop a queued or running evaluation (its creator or an admin; 409 when finished).

        The row is marked first (the guarded move decides a race with the job's end), then
        the job is stopped; a job on another instance notices at its next progress write.
        """
        row = await self.get(principal.org_id, name, evaluation_id)
        if row.created_by != principal.user_id and not principal.is_admin:
            raise ApiError(403, "forbidden", "only its creator or an admin can cancel it")
        if not await self._store.set_status(
            evaluation_id, "cancelled", error="cancelled by the user"
        ):
            current = await self.get(principal.org_id, name, evaluation_id)
            raise ApiError(409, "not_running", f"evaluation {evaluation_id!r} is {current.status}")
        await self._jobs.cancel(evaluation_id)
        return await self.get(principal.org_id, name, evaluation_id)

    async def recover(self) -> int:
        """Queue again the evaluations a restart interrupted (``queued`` or ``running``)."""
        rows = await self._store.active()
        for row in rows:
            await self._enqueue(row)
        return len(rows)

    async def _enqueue(self, row: PromptEvaluation) -> None:
        await self._jobs.enqueue(
            EVALUATE_TASK, {"evaluation_id": row.id}, org_id=row.org_id, job_id=row.id
        )
