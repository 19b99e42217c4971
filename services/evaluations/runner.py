"""The job body of an evaluation: run every (item, version) pair, score it, store the end.

:meth:`EvaluationRunner.run` is the handler of task :data:`EVALUATE_TASK` (payload
``{"evaluation_id": ...}``); ``services.job_table`` registers it. It may run under any
queue that delivers at least once: it reads the row, claims it (``running``) and ends it
(``done`` / ``failed``) only through the store's guarded status moves, so a delivery for
a finished or cancelled evaluation does nothing (see ``services.evaluations.store``). The
plan is checked again from the stored request, since templates or keys may have changed.

Pairs run items interleaved across versions, at most ``concurrency`` at once. Every model
call is :meth:`EvaluationRunner.call_model`: one accounted call (route ``prompt.evaluate``,
the template's name and version, the evaluation id as ``request_id``) that holds against
the org's and the creator's limits. A denied hold stops the evaluation: it ends ``failed``,
naming the limit, with the results of what ran.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from langchain_core.messages import BaseMessage

from accounting.embeddings import AccountedEmbeddings
from accounting.events import CallContext
from auth.tokens import Principal
from chains.prompt_playground import answer_text
from core.errors import ApiError
from core.tokenizer import count_message_tokens, count_text_tokens
from db.models import PromptEvaluation
from prompts import evaluators as ev
from prompts.evaluation_plan import DatasetItem, EvaluationDraft, Plan, Target
from providers.errors import upstream_errors
from providers.registry import ModelRoute
from services.evaluations.planner import EvaluationPlanner
from services.evaluations.report import ItemResult, summarize
from services.evaluations.store import ACTIVE, EvaluationStore
from services.metering import MeteringGate

logger = logging.getLogger(__name__)

EVALUATE_TASK = "prompt.evaluate"
"""The job's name in the job table."""
ROUTE = "prompt.evaluate"
"""The usage events' route of every call an evaluation makes (versions, judge, embeddings)."""
PROGRESS_SECONDS = 1.0
"""Progress is written at most this often (each write also notices a cancel)."""

ModelReply = tuple[str, int, int, Decimal, float]
"""A model call's output, prompt and completion tokens, cost and latency (ms)."""


class _LimitHit(Exception):
    """A call's hold was denied: the evaluation stops."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class _Aborted(Exception):
    """The evaluation stopped early (a limit): its message and the results so far."""

    def __init__(self, message: str, results: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.results = results


def _error(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, ApiError):
        return {"code": exc.code, "message": exc.message}
    return {"code": "evaluation_error", "message": f"{type(exc).__name__}: {exc}"[:500]}


class EvaluationRunner:
    """Runs evaluations as jobs: the handler, the pairs, the model calls, the scores."""

    def __init__(
        self,
        *,
        store: EvaluationStore,
        planner: EvaluationPlanner,
        gate: MeteringGate,
    ) -> None:
        self._store = store
        self._planner = planner
        self._gate = gate

    async def run(self, payload: dict[str, Any]) -> None:
        """The job: claim the row, run the evaluation, record how it ended.

        Safe to deliver again: a row that is gone, finished or cancelled is left alone, and
        the end is written only while the row is still ``running`` (not cancelled).
        """
        evaluation_id = str(payload["evaluation_id"])
        row = await self._store.find(evaluation_id)
        if row is None or row.status not in ACTIVE:
            return
        if not await self._store.set_status(evaluation_id, "running"):
            return  # cancelled between the read and the claim
        try:
            outcome = await self._execute(row)
        except asyncio.CancelledError:
            # A user's cancel has marked the row; a shutdown leaves it ``running`` and the
            # next start-up queues it again.
            raise
        except _Aborted as exc:
            await self._store.set_status(
                evaluation_id, "failed", error=exc.message, results=exc.results
            )
            return
        except ApiError as exc:
            await self._store.set_status(
                evaluation_id, "failed", error=f"{exc.code}: {exc.message}"
            )
            return
        except Exception as exc:
            logger.exception("evaluation %s failed", evaluation_id)
            await self._store.set_status(
                evaluation_id, "failed", error=f"{type(exc).__name__}: {exc}"[:1000]
            )
            return
        if outcome is not None:
            await self._store.set_status(evaluation_id, "done", results=outcome)

    async def _execute(self, row: PromptEvaluation) -> dict[str, Any] | None:
        """Run every (item, version) pair; the results (None: cancelled meanwhile)."""
        draft = EvaluationDraft.from_json(row.request)
        plan = await self._planner.plan(row.org_id, row.template_name, draft)
        principal = Principal(org_id=row.org_id, user_id=row.created_by)
        results: dict[tuple[int, int], ItemResult] = {}
        semaphore = asyncio.Semaphore(draft.concurrency)
        progress = _Progress(self._store, row.id)
        limit_hit: list[ApiError] = []

        async def run(target: Target, index: int) -> None:
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
        summary = summarize(plan, results)
        if limit_hit:
            raise _Aborted(f"{limit_hit[0].code}: {limit_hit[0].message}", summary)
        return summary

    @staticmethod
    def _context(principal: Principal, plan: Plan, version: int, run_id: str) -> CallContext:
        return CallContext(
            org_id=principal.org_id,
            user_id=principal.user_id,
            route=ROUTE,
            request_id=run_id,
            template_name=plan.name,
            template_version=version,
        )

    async def call_model(
        self,
        principal: Principal,
        context: CallContext,
        route: ModelRoute,
        messages: list[BaseMessage],
        params: Mapping[str, Any],
    ) -> ModelReply:
        """One metered model call (``services.metering``): output, tokens, cost, latency (ms).

        The route was resolved with the org's key by the planner; a denied hold is
        ``_LimitHit`` (the evaluation stops there, keeping what it has).
        """
        try:
            call = await self._gate.hold(
                principal,
                context,
                route,
                prompt=lambda: _prompt_text(messages, params),
                messages=len(messages),
                reply_limit=params.get("max_completion_tokens") or params.get("max_tokens"),
            )
        except ApiError as exc:
            if exc.code == "limit_exceeded":
                raise _LimitHit(exc) from exc
            raise
        bound = {**params, **({"max_tokens": call.cap} if call.cap is not None else {})}
        model = call.chat_model()
        runnable = model.bind(**bound) if bound else model
        started = time.perf_counter()
        async with call:  # gives the hold back unless the call's usage settled it
            with upstream_errors(route.upstream.provider):
                reply = await runnable.ainvoke(messages, config=call.runnable_config())
        latency = round((time.perf_counter() - started) * 1000, 1)
        output = answer_text(reply) if isinstance(reply, BaseMessage) else str(reply)
        usage = getattr(reply, "usage_metadata", None)
        if usage and (usage.get("input_tokens") or usage.get("output_tokens")):
            prompt, completion = int(usage["input_tokens"]), int(usage["output_tokens"])
        else:
            prompt = count_message_tokens(messages, route.name)
            completion = count_text_tokens(output, route.name)
        cost = self._gate.accountant.prices.cost(route.name, prompt, completion)
        return output, prompt, completion, cost, latency

    async def _item(
        self, plan: Plan, target: Target, index: int, principal: Principal, run_id: str
    ) -> ItemResult:
        """Run one item with one version, then its evaluators."""
        messages = plan.rendered[(target.version, index)]
        item = plan.draft.dataset[index]
        context = self._context(principal, plan, target.version, run_id)
        result = ItemResult(index=index)
        try:
            output, prompt, completion, cost, latency = await self.call_model(
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
        plan: Plan,
        spec: ev.EvaluatorSpec,
        target: Target,
        item: DatasetItem,
        messages: list[BaseMessage],
        output: str,
        principal: Principal,
        context: CallContext,
        result: ItemResult,
    ) -> float | None:
        """One evaluator's score of one output (the judge's usage is added to ``result``)."""
        if spec.name == "similarity":
            assert plan.similarity is not None and item.expected is not None
            embedding_spec, inner = plan.similarity
            embedder = AccountedEmbeddings(
                inner, spec=embedding_spec, accountant=self._gate.accountant, context=context
            )
            first, second = await embedder.aembed_documents([output, item.expected])
            return round(ev.cosine(first, second), 6)
        if spec.name == "judge":
            assert plan.judge is not None
            answer, prompt, completion, cost, _ = await self.call_model(
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


class _Progress:
    """Counts finished pairs; writes the count at most every ``PROGRESS_SECONDS``."""

    def __init__(self, store: EvaluationStore, evaluation_id: str) -> None:
        self._store = store
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
            if not await self._store.write_progress(self._id, self.done):
                self.cancelled = True
        finally:
            self._written_at = time.monotonic()
            self._writing = False


def _prompt_text(messages: list[BaseMessage], params: Mapping[str, Any]) -> str:
    """What a limit hold counts: the messages, and the tools and format sent with them."""
    parts: list[str] = [str(m.text) for m in messages]
    parts += [json.dumps(params[k]) for k in ("tools", "response_format") if params.get(k)]
    return " ".join(parts)
