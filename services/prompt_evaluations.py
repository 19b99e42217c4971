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
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounting.accountant import Accountant
from accounting.embeddings import AccountedEmbeddings
from accounting.events import CallContext
from auth.tokens import Principal
from core.errors import ApiError
from core.tokenizer import count_message_tokens, count_text_tokens
from core.tracing import run_metadata
from db.models import PromptEvaluation
from db.session import session_scope
from jobs.queue import JobQueue
from limits.enforcer import LimitEnforcer
from prompts import evaluators as ev
from prompts.errors import PromptError
from providers.embeddings import EmbeddingRegistry, EmbeddingSpec, UnknownEmbeddingModel
from providers.errors import upstream_errors
from providers.keys import ProviderKeyStore, org_openai_key
from providers.registry import ModelRegistry, ModelRoute
from services.prompt_templates import PromptTemplates, ResolvedTemplate

logger = logging.getLogger(__name__)

EVALUATE_TASK = "prompt.evaluate"
ROUTE = "prompt.evaluate"
"""The usage events' route of every call an evaluation makes (versions, judge, embeddings)."""
MAX_DATASET_ITEMS = ev.MAX_DATASET_ITEMS
MAX_VERSIONS = ev.MAX_VERSIONS
MAX_EVALUATORS = ev.MAX_EVALUATORS
MAX_CONCURRENCY = ev.MAX_CONCURRENCY
DEFAULT_CONCURRENCY = ev.DEFAULT_CONCURRENCY
OUTPUT_CHARS = 2000
"""Outputs are stored cut to this many characters (scores use the whole output)."""
PROGRESS_SECONDS = 1.0
ACTIVE = ("queued", "running")

Status = Literal["queued", "running", "done", "failed", "cancelled"]


@dataclass(frozen=True)
class DatasetItem:
    """One row of the dataset: the template's variables and, optionally, the answer."""

    variables: Mapping[str, Any]
    expected: str | None = None


@dataclass(frozen=True)
class EvaluationDraft:
    """A submitted evaluation (``versions`` None: the template's latest version)."""

    dataset: Sequence[DatasetItem]
    versions: Sequence[int] | None = None
    evaluators: Sequence[str | Mapping[str, Any]] = ()
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    concurrency: int = DEFAULT_CONCURRENCY

    def to_json(
        self, evaluators: Sequence[ev.EvaluatorSpec], versions: list[int]
    ) -> dict[str, Any]:
        """The stored request: normalized evaluators, resolved versions."""
        return {
            "versions": versions,
            "dataset": [
                {"variables": dict(item.variables), "expected": item.expected}
                for item in self.dataset
            ],
            "evaluators": [spec.to_json() for spec in evaluators],
            "model": self.model,
            "params": {k: v for k, v in self.params.items() if v is not None},
            "concurrency": self.concurrency,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvaluationDraft:
        """Inverse of :meth:`to_json`."""
        return cls(
            dataset=[
                DatasetItem(variables=item.get("variables") or {}, expected=item.get("expected"))
                for item in data["dataset"]
            ],
            versions=list(data["versions"]),
            evaluators=list(data.get("evaluators") or []),
            model=data.get("model"),
            params=dict(data.get("params") or {}),
            concurrency=int(data.get("concurrency") or DEFAULT_CONCURRENCY),
        )


@dataclass(frozen=True)
class _Target:
    """One version under evaluation: its template, model route and generation params."""

    template: ResolvedTemplate
    route: ModelRoute
    params: dict[str, Any]

    @property
    def version(self) -> int:
        return self.template.version


@dataclass(frozen=True)
class _Plan:
    """A checked evaluation, ready to run."""

    name: str
    org_key: str | None
    draft: EvaluationDraft
    targets: list[_Target]
    evaluators: list[ev.EvaluatorSpec]
    rendered: dict[tuple[int, int], list[BaseMessage]]
    """(version, item index) → the rendered messages."""
    judge: ModelRoute | None
    similarity: tuple[EmbeddingSpec, Embeddings] | None

    @property
    def versions(self) -> list[int]:
        return [t.version for t in self.targets]


@dataclass
class _Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)

    def add(self, prompt: int, completion: int, cost: Decimal) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cost += cost


@dataclass
class _ItemResult:
    """One (version, item) run."""

    index: int
    output: str | None = None
    latency_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)
    scores: dict[str, float | None] = field(default_factory=dict)
    judge_reason: str | None = None
    evaluator_errors: dict[str, dict[str, str]] = field(default_factory=dict)
    evaluator_usage: _Usage = field(default_factory=_Usage)
    error: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        output = self.output
        truncated = output is not None and len(output) > OUTPUT_CHARS
        return {
            "index": self.index,
            "output": output[:OUTPUT_CHARS] if output is not None else None,
            "output_truncated": truncated,
            "latency_ms": self.latency_ms,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": _usd(self.cost),
            "scores": self.scores,
            "judge_reason": self.judge_reason,
            "evaluator_errors": self.evaluator_errors,
            "error": self.error,
        }


class _LimitHit(Exception):
    """A call's hold was denied: the evaluation stops."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def _usd(value: Decimal) -> float:
    return float(round(value, 10))


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _error(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, ApiError):
        return {"code": exc.code, "message": exc.message}
    return {"code": "evaluation_error", "message": f"{type(exc).__name__}: {exc}"[:500]}


def _now() -> datetime:
    return datetime.now(UTC)


class PromptEvaluations:
    """Evaluations of every org's templates (``services.prompt_evaluations``)."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        templates: PromptTemplates,
        registry: ModelRegistry,
        embeddings: EmbeddingRegistry,
        accountant: Accountant,
        limits: LimitEnforcer,
        provider_keys: ProviderKeyStore,
        jobs: JobQueue,
    ) -> None:
        self._sessions = sessions
        self._templates = templates
        self._registry = registry
        self._embeddings = embeddings
        self._accountant = accountant
        self._limits = limits
        self._keys = provider_keys
        self._jobs = jobs
        jobs.register(EVALUATE_TASK, self._run_job)

    # --- the API ---------------------------------------------------------------------

    async def start(
        self, principal: Principal, name: str, draft: EvaluationDraft
    ) -> PromptEvaluation:
        """Check the evaluation, store it ``queued`` and enqueue its job."""
        plan = await self._plan(principal.org_id, name, draft)
        row = PromptEvaluation(
            id=str(uuid.uuid4()),
            org_id=principal.org_id,
            template_name=plan.name,
            versions=plan.versions,
            request=draft.to_json(plan.evaluators, plan.versions),
            status="queued",
            total_items=len(plan.targets) * len(draft.dataset),
            done_items=0,
            created_by=principal.user_id,
            created_at=_now(),
        )
        async with session_scope(self._sessions) as session:
            session.add(row)
        await self._enqueue(row)
        return row

    async def get(self, org_id: str, name: str, evaluation_id: str) -> PromptEvaluation:
        """The org's evaluation of template ``name`` (404 otherwise)."""
        async with self._sessions() as session:
            row = await session.get(PromptEvaluation, evaluation_id)
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

    async def cancel(self, principal: Principal, name: str, evaluation_id: str) -> PromptEvaluation:
        """Stop a queued or running evaluation (its creator or an admin; 409 when finished)."""
        row = await self.get(principal.org_id, name, evaluation_id)
        if row.created_by != principal.user_id and not principal.is_admin:
            raise ApiError(403, "forbidden", "only its creator or an admin can cancel it")
        if not await self._set_status(evaluation_id, "cancelled", error="cancelled by the user"):
            current = await self.get(principal.org_id, name, evaluation_id)
            raise ApiError(409, "not_running", f"evaluation {evaluation_id!r} is {current.status}")
        await self._jobs.cancel(evaluation_id)
        return await self.get(principal.org_id, name, evaluation_id)

    async def recover(self) -> int:
        """Queue again the evaluations a restart interrupted (``queued`` or ``running``)."""
        async with self._sessions() as session:
            result = await session.execute(
                select(PromptEvaluation)
                .where(PromptEvaluation.status.in_(ACTIVE))
                .order_by(PromptEvaluation.created_at)
            )
            rows = list(result.scalars())
        for row in rows:
            await self._enqueue(row)
        return len(rows)

    async def _enqueue(self, row: PromptEvaluation) -> None:
        await self._jobs.enqueue(
            EVALUATE_TASK, {"evaluation_id": row.id}, org_id=row.org_id, job_id=row.id
        )

    # --- checking --------------------------------------------------------------------

    async def _plan(self, org_id: str, name: str, draft: EvaluationDraft) -> _Plan:
        """Everything checked before any call: 404/422/400 naming what is wrong."""
        if not draft.dataset:
            raise ApiError(422, "invalid_request", "the dataset needs at least one item")
        if len(draft.dataset) > MAX_DATASET_ITEMS:
            raise ApiError(
                422, "invalid_request", f"the dataset has more than {MAX_DATASET_ITEMS} items"
            )
        if not 1 <= draft.concurrency <= MAX_CONCURRENCY:
            raise ApiError(
                422, "invalid_request", f"concurrency must be between 1 and {MAX_CONCURRENCY}"
            )
        view, _ = await self._templates.get(org_id, name)
        versions = list(dict.fromkeys(draft.versions or [view.latest_version]))
        if len(versions) > MAX_VERSIONS:
            raise ApiError(422, "invalid_request", f"at most {MAX_VERSIONS} versions at once")
        templates: list[ResolvedTemplate] = []
        missing: list[int] = []
        for version in versions:
            try:
                templates.append(await self._templates.resolve(org_id, name, version=version))
            except ApiError as exc:
                if exc.code != "version_not_found":
                    raise
                missing.append(version)
        if missing:
            shown = ", ".join(str(v) for v in missing)
            raise ApiError(
                422,
                "unknown_versions",
                f"template {name!r} has no version {shown} (latest: {view.latest_version})",
                details={"versions": missing},
            )
        specs = ev.parse_evaluators(draft.evaluators)
        if len(specs) > MAX_EVALUATORS:
            raise ApiError(422, "invalid_request", f"at most {MAX_EVALUATORS} evaluators")
        self._check_expected(specs, draft.dataset)
        rendered = self._render_all(templates, draft.dataset)
        org_key = await self._keys.get(org_id, "openai")
        targets = [
            _Target(
                template=template,
                route=self._registry.resolve(draft.model or template.model, org_key=org_key),
                params={
                    **{k: v for k, v in template.params.items() if v is not None},
                    **{k: v for k, v in draft.params.items() if v is not None},
                },
            )
            for template in templates
        ]
        judge = next((s for s in specs if s.name == "judge"), None)
        judge_route = self._registry.resolve(judge.model, org_key=org_key) if judge else None
        if judge_route is not None:  # stored with the model it resolved to (the default's)
            specs = [replace(s, model=judge_route.name) if s.name == "judge" else s for s in specs]
        similarity = next((s for s in specs if s.name == "similarity"), None)
        embedder: tuple[EmbeddingSpec, Embeddings] | None = None
        if similarity is not None:
            try:
                embedder = (
                    self._embeddings.spec(similarity.embedding_model, org_key=org_key),
                    self._embeddings.embeddings(similarity.embedding_model, org_key=org_key),
                )
            except UnknownEmbeddingModel as exc:
                raise ApiError(400, "unknown_embedding_model", str(exc)) from exc
        return _Plan(
            name=templates[0].name,
            org_key=org_key,
            draft=draft,
            targets=targets,
            evaluators=specs,
            rendered=rendered,
            judge=judge_route,
            similarity=embedder,
        )

    @staticmethod
    def _check_expected(specs: Sequence[ev.EvaluatorSpec], dataset: Sequence[DatasetItem]) -> None:
        lacking = [i for i, item in enumerate(dataset) if item.expected is None]
        for spec in specs:
            if spec.needs_expected and lacking:
                shown = ", ".join(str(i) for i in lacking[:20]) + (
                    ", ..." if len(lacking) > 20 else ""
                )
                raise ApiError(
                    422,
                    "expected_missing",
                    f"evaluator {spec.name!r} compares outputs with 'expected', which dataset "
                    f"items {shown} lack",
                    details={"evaluator": spec.name, "items": lacking},
                )

    @staticmethod
    def _render_all(
        templates: Sequence[ResolvedTemplate], dataset: Sequence[DatasetItem]
    ) -> dict[tuple[int, int], list[BaseMessage]]:
        rendered: dict[tuple[int, int], list[BaseMessage]] = {}
        for index, item in enumerate(dataset):
            for template in templates:
                try:
                    rendered[(template.version, index)] = template.render(item.variables)
                except PromptError as exc:
                    raise PromptError(
                        exc.code,
                        f"dataset[{index}] with version {template.version}: {exc.message}",
                        status_code=exc.status_code,
                        details={**exc.details, "item": index, "version": template.version},
                    ) from exc
        return rendered

    # --- running ---------------------------------------------------------------------

    async def _run_job(self, payload: dict[str, Any]) -> None:
        """The job: run the evaluation, record how it ended."""
        evaluation_id = str(payload["evaluation_id"])
        async with self._sessions() as session:
            row = await session.get(PromptEvaluation, evaluation_id)
        if row is None or row.status not in ACTIVE:
            return
        if not await self._set_status(evaluation_id, "running"):
            return
        try:
            outcome = await self._execute(row)
        except asyncio.CancelledError:
            # A user's cancel has marked the row; a shutdown leaves it ``running`` and the
            # next start-up queues it again.
            raise
        except _Aborted as exc:
            await self._set_status(evaluation_id, "failed", error=exc.message, results=exc.results)
            return
        except ApiError as exc:
            await self._set_status(evaluation_id, "failed", error=f"{exc.code}: {exc.message}")
            return
        except Exception as exc:
            logger.exception("evaluation %s failed", evaluation_id)
            await self._set_status(
                evaluation_id, "failed", error=f"{type(exc).__name__}: {exc}"[:1000]
            )
            return
        if outcome is not None:
            await self._set_status(evaluation_id, "done", results=outcome)

    async def _execute(self, row: PromptEvaluation) -> dict[str, Any] | None:
        """Run every (item, version) pair; the results (None: cancelled meanwhile)."""
        draft = EvaluationDraft.from_json(row.request)
        plan = await self._plan(row.org_id, row.template_name, draft)
        org_openai_key.set(plan.org_key)  # the registry's model factory reads it
        principal = Principal(org_id=row.org_id, user_id=row.created_by)
        results: dict[tuple[int, int], _ItemResult] = {}
        semaphore = asyncio.Semaphore(draft.concurrency)
        progress = _Progress(self, row.id)
        limit_hit: list[ApiError] = []

        async def run(target: _Target, index: int) -> None:
            async with semaphore:
                if limit_hit or progress.cancelled:
                    return
                try:
                    result = await self._item(plan, target, index, principal, row.id)
                except _LimitHit as exc:
                    limit_hit.append(exc.error)
                    return
                results[(target.version, index)] = result
                await progress.step()

        await asyncio.gather(
            *(run(target, index) for index in range(len(draft.dataset)) for target in plan.targets)
        )
        if progress.cancelled:
            return None
        await progress.flush()
        summary = _summarize(plan, results)
        if limit_hit:
            raise _Aborted(f"{limit_hit[0].code}: {limit_hit[0].message}", summary)
        return summary

    def _context(self, principal: Principal, plan: _Plan, version: int, run_id: str) -> CallContext:
        return CallContext(
            org_id=principal.org_id,
            user_id=principal.user_id,
            route=ROUTE,
            request_id=run_id,
            template_name=plan.name,
            template_version=version,
        )

    async def _call(
        self,
        principal: Principal,
        context: CallContext,
        route: ModelRoute,
        messages: list[BaseMessage],
        params: Mapping[str, Any],
    ) -> tuple[str, int, int, Decimal, float]:
        """One accounted, limited model call: output, tokens, cost, latency (ms)."""
        try:
            held, cap = await self._limits.hold(
                principal,
                context,
                model=route.name,
                prompt=lambda: " ".join(m.text for m in messages),
                messages=len(messages),
                reply_limit=params.get("max_tokens"),
            )
        except ApiError as exc:
            if exc.code == "limit_exceeded":
                raise _LimitHit(exc) from exc
            raise
        bound = dict(params)
        if cap is not None:
            bound["max_tokens"] = cap
        model = self._registry.chat_model(route.name)
        runnable = model.bind(**bound) if bound else model
        config: RunnableConfig = {
            "callbacks": [self._accountant.callback(held)],
            **run_metadata(held),  # type: ignore[typeddict-item]
        }
        started = time.perf_counter()
        try:
            with upstream_errors(route.upstream.provider):
                reply = await runnable.ainvoke(messages, config=config)
        finally:
            if held.reservation is not None:
                held.reservation.release()  # a no-op once the call's usage settled it
        latency = round((time.perf_counter() - started) * 1000, 1)
        output = reply.text if isinstance(reply, BaseMessage) else str(reply)
        usage = getattr(reply, "usage_metadata", None)
        if usage and (usage.get("input_tokens") or usage.get("output_tokens")):
            prompt, completion = int(usage["input_tokens"]), int(usage["output_tokens"])
        else:
            prompt = count_message_tokens(messages, route.name)
            completion = count_text_tokens(output, route.name)
        cost = self._accountant.prices.cost(route.name, prompt, completion)
        return output, prompt, completion, cost, latency

    async def _item(
        self, plan: _Plan, target: _Target, index: int, principal: Principal, run_id: str
    ) -> _ItemResult:
        """Run one item with one version, then its evaluators."""
        messages = plan.rendered[(target.version, index)]
        item = plan.draft.dataset[index]
        context = self._context(principal, plan, target.version, run_id)
        result = _ItemResult(index=index)
        try:
            output, prompt, completion, cost, latency = await self._call(
                principal, context, target.route, messages, target.params
            )
        except (_LimitHit, asyncio.CancelledError):
            raise
        except Exception as exc:
            if not isinstance(exc, ApiError):
                logger.warning("evaluation call failed: %s", exc, exc_info=True)
            result.error = _error(exc)
            return result
        result.output, result.latency_ms = output, latency
        result.prompt_tokens, result.completion_tokens, result.cost = prompt, completion, cost
        for spec in plan.evaluators:
            try:
                result.scores[spec.name] = await self._score(
                    plan, spec, target, item, messages, output, principal, context, result
                )
            except (_LimitHit, asyncio.CancelledError):
                raise
            except Exception as exc:
                if not isinstance(exc, ApiError):
                    logger.warning("evaluator %s failed: %s", spec.name, exc, exc_info=True)
                result.scores[spec.name] = None
                result.evaluator_errors[spec.name] = _error(exc)
        return result

    async def _score(
        self,
        plan: _Plan,
        spec: ev.EvaluatorSpec,
        target: _Target,
        item: DatasetItem,
        messages: list[BaseMessage],
        output: str,
        principal: Principal,
        context: CallContext,
        result: _ItemResult,
    ) -> float | None:
        if spec.name == "similarity":
            assert plan.similarity is not None and item.expected is not None
            embedding_spec, inner = plan.similarity
            embedder = AccountedEmbeddings(
                inner, spec=embedding_spec, accountant=self._accountant, context=context
            )
            first, second = await embedder.aembed_documents([output, item.expected])
            return round(ev.cosine(first, second), 6)
        if spec.name == "judge":
            assert plan.judge is not None
            answer, prompt, completion, cost, _ = await self._call(
                principal,
                context,
                plan.judge,
                ev.judge_messages(spec.rubric, messages, output, item.expected),
                {"temperature": 0, "max_tokens": ev.JUDGE_MAX_TOKENS},
            )
            result.evaluator_usage.add(prompt, completion, cost)
            verdict = ev.parse_verdict(answer)
            result.judge_reason = verdict.reason
            if verdict.score is None:
                raise ApiError(
                    502,
                    "judge_unparseable",
                    f"the judge's answer has no score from 0 to 10: {answer[:200]!r}",
                )
            return verdict.score
        return ev.score(spec, output, item.expected, model=target.route.name)

    # --- state -----------------------------------------------------------------------

    async def _set_status(
        self,
        evaluation_id: str,
        status: Status,
        *,
        error: str | None = None,
        results: dict[str, Any] | None = None,
    ) -> bool:
        """Move the row on (only from an active state); False when it was not active."""
        values: dict[str, Any] = {"status": status}
        allowed: tuple[str, ...] = ACTIVE
        if status == "running":
            values["started_at"] = _now()
        else:
            values["finished_at"] = _now()
            values["error"] = error
            allowed = ("running",) if status in ("done", "failed") else ACTIVE
        if results is not None:
            values["results"] = results
        async with session_scope(self._sessions) as session:
            outcome = await session.execute(
                update(PromptEvaluation)
                .where(PromptEvaluation.id == evaluation_id, PromptEvaluation.status.in_(allowed))
                .values(**values)
            )
        return bool(getattr(outcome, "rowcount", 0))

    async def _write_progress(self, evaluation_id: str, done: int) -> bool:
        """Record progress; False when the row is no longer running (cancelled, deleted)."""
        async with session_scope(self._sessions) as session:
            outcome = await session.execute(
                update(PromptEvaluation)
                .where(PromptEvaluation.id == evaluation_id, PromptEvaluation.status == "running")
                .values(done_items=done)
            )
        return bool(getattr(outcome, "rowcount", 0))


class _Aborted(Exception):
    """The evaluation stopped early (a limit): its message and the results so far."""

    def __init__(self, message: str, results: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.results = results


class _Progress:
    """Counts finished pairs; writes the count at most every ``PROGRESS_SECONDS``."""

    def __init__(self, owner: PromptEvaluations, evaluation_id: str) -> None:
        self._owner = owner
        self._id = evaluation_id
        self.done = 0
        self.cancelled = False
        self._written_at = time.monotonic()
        self._writing = False

    async def step(self) -> None:
        self.done += 1
        if self._writing or time.monotonic() - self._written_at < PROGRESS_SECONDS:
            return
        await self.flush()

    async def flush(self) -> None:
        self._writing = True
        try:
            if not await self._owner._write_progress(self._id, self.done):
                self.cancelled = True
        finally:
            self._written_at = time.monotonic()
            self._writing = False


def _summarize(plan: _Plan, results: Mapping[tuple[int, int], _ItemResult]) -> dict[str, Any]:
    """Per-version summaries (with their items) and the best version per measure."""
    versions: list[dict[str, Any]] = []
    for target in plan.targets:
        items = sorted(
            (r for (v, _), r in results.items() if v == target.version), key=lambda r: r.index
        )
        ok = [r for r in items if r.error is None]
        latencies = [r.latency_ms for r in ok if r.latency_ms is not None]
        usage = _Usage()
        for r in items:
            usage.add(
                r.evaluator_usage.prompt_tokens,
                r.evaluator_usage.completion_tokens,
                r.evaluator_usage.cost,
            )
        prompt = sum(r.prompt_tokens for r in items)
        completion = sum(r.completion_tokens for r in items)
        scores: dict[str, float | None] = {}
        evaluator_errors: dict[str, int] = {}
        for spec in plan.evaluators:
            values = [s for r in ok if (s := r.scores.get(spec.name)) is not None]
            scores[spec.name] = _rounded(ev.mean(values))
            evaluator_errors[spec.name] = sum(1 for r in ok if spec.name in r.evaluator_errors)
        versions.append(
            {
                "version": target.version,
                "model": target.route.name,
                "params": target.params,
                "n": len(items),
                "errors": len(items) - len(ok),
                "latency_ms": {
                    "mean": _rounded(ev.mean(latencies), 1),
                    "p50": _rounded(ev.percentile(latencies, 50), 1),
                    "p95": _rounded(ev.percentile(latencies, 95), 1),
                },
                "tokens": {
                    "prompt": prompt,
                    "completion": completion,
                    "total": prompt + completion,
                },
                "cost_usd": _usd(sum((r.cost for r in items), Decimal(0))),
                "scores": scores,
                "evaluator_errors": evaluator_errors,
                "evaluator_usage": {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "cost_usd": _usd(usage.cost),
                },
                "items": [r.to_json() for r in items],
            }
        )
    return {"versions": versions, "best": _best(plan.evaluators, versions)}


def _best(
    specs: Sequence[ev.EvaluatorSpec], versions: Sequence[dict[str, Any]]
) -> dict[str, list[int]]:
    """The version(s) with the best mean per score (highest), latency and cost (lowest)."""
    measures: list[tuple[str, Any, bool]] = [
        (spec.name, lambda v, n=spec.name: v["scores"].get(n), True)
        for spec in specs
        if spec.name != "length"  # longer is not better, nor shorter
    ]
    measures += [
        ("latency_ms", lambda v: v["latency_ms"]["mean"], False),
        ("cost_usd", lambda v: v["cost_usd"] if v["n"] > v["errors"] else None, False),
    ]
    best: dict[str, list[int]] = {}
    for key, value_of, higher in measures:
        values = [(v["version"], value_of(v)) for v in versions]
        present = [(version, value) for version, value in values if value is not None]
        if not present:
            continue
        top = (max if higher else min)(value for _, value in present)
        best[key] = [version for version, value in present if value == top]
    return best
