"""The report of an evaluation: per-item results, per-version summaries, the best versions.

Pure: the runner collects :class:`ItemResult` s and :func:`summarize` turns them into the
``results`` JSON the API serves (``api.prompt_schemas.EvaluationResults``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from prompts import evaluators as ev
from prompts.evaluation_plan import Plan

OUTPUT_CHARS = 2000
"""Outputs are stored cut to this many characters (scores use the whole output)."""


@dataclass
class Usage:
    """Tokens and cost added up (the evaluators' calls of one item or one version)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)

    def add(self, prompt: int, completion: int, cost: Decimal) -> None:
        """Count one call."""
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cost += cost


@dataclass
class ItemResult:
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
    evaluator_usage: Usage = field(default_factory=Usage)
    error: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored item (output cut to :data:`OUTPUT_CHARS`)."""
        output = self.output
        truncated = output is not None and len(output) > OUTPUT_CHARS
        return {
            "index": self.index,
            "output": output[:OUTPUT_CHARS] if output is not None else None,
            "output_truncated": truncated,
            "latency_ms": self.latency_ms,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": usd(self.cost),
            "scores": self.scores,
            "judge_reason": self.judge_reason,
            "evaluator_errors": self.evaluator_errors,
            "error": self.error,
        }


def usd(value: Decimal) -> float:
    """A cost as JSON's number, to 10 decimals."""
    return float(round(value, 10))


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def summarize(plan: Plan, results: Mapping[tuple[int, int], ItemResult]) -> dict[str, Any]:
    """Per-version summaries (with their items) and the best version per measure.

    ``results`` is keyed (version, item index) and may lack pairs that never ran (a limit
    stopped the evaluation): each version reports the items it has.
    """
    versions: list[dict[str, Any]] = []
    for target in plan.targets:
        items = sorted(
            (r for (v, _), r in results.items() if v == target.version), key=lambda r: r.index
        )
        ok = [r for r in items if r.error is None]
        latencies = [r.latency_ms for r in ok if r.latency_ms is not None]
        usage = Usage()
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
                "cost_usd": usd(sum((r.cost for r in items), Decimal(0))),
                "scores": scores,
                "evaluator_errors": evaluator_errors,
                "evaluator_usage": {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "cost_usd": usd(usage.cost),
                },
                "items": [r.to_json() for r in items],
            }
        )
    return {"versions": versions, "best": best(plan.evaluators, versions)}


def best(
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
    result: dict[str, list[int]] = {}
    for key, value_of, higher in measures:
        values = [(v["version"], value_of(v)) for v in versions]
        present = [(version, value) for version, value in values if value is not None]
        if not present:
            continue
        top = (max if higher else min)(value for _, value in present)
        result[key] = [version for version, value in present if value == top]
    return result
