"""The plan of a prompt evaluation: the request, its checks, the rendered messages.

Pure on purpose (no I/O, nothing from ``services``): an evaluation is checked twice, when
it is submitted (so every mistake is a 4xx before anything is stored) and again when its
job starts (templates, labels or keys may have changed since). Both go through
``services.evaluations.planner``, which fetches the templates, the org's key and the
model routes, and hands them to these functions. Every check raises a 422 ``ApiError``
that names what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage

from core.errors import ApiError
from prompts import evaluators as ev
from prompts.errors import PromptError
from providers.embeddings import EmbeddingSpec
from providers.registry import ModelRoute

MAX_DATASET_ITEMS = ev.MAX_DATASET_ITEMS
MAX_VERSIONS = ev.MAX_VERSIONS
MAX_EVALUATORS = ev.MAX_EVALUATORS
MAX_CONCURRENCY = ev.MAX_CONCURRENCY
DEFAULT_CONCURRENCY = ev.DEFAULT_CONCURRENCY
EXPECTED_MISSING_SHOWN = 20
"""An ``expected_missing`` message names this many items (``details`` has them all)."""


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
class Target:
    """One version under evaluation: its model route and generation params."""

    version: int
    route: ModelRoute
    params: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """A checked evaluation, ready to run."""

    name: str
    org_key: str | None
    draft: EvaluationDraft
    targets: list[Target]
    evaluators: list[ev.EvaluatorSpec]
    rendered: dict[tuple[int, int], list[BaseMessage]]
    """(version, item index) → the rendered messages."""
    judge: ModelRoute | None
    similarity: tuple[EmbeddingSpec, Embeddings] | None

    @property
    def versions(self) -> list[int]:
        """The evaluated versions, in the order they were asked for."""
        return [t.version for t in self.targets]


class VersionTemplate(Protocol):
    """What the plan needs of a template version (``ResolvedTemplate`` is one)."""

    @property
    def version(self) -> int:
        """The version's number."""
        ...

    def render(self, variables: Mapping[str, Any]) -> list[BaseMessage]:
        """The rendered messages (422 ``PromptError`` naming what is wrong)."""
        ...


def _invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_request", message)


def check_bounds(draft: EvaluationDraft) -> None:
    """The dataset's size and the concurrency (checked before any template is read)."""
    if not draft.dataset:
        raise _invalid("the dataset needs at least one item")
    if len(draft.dataset) > MAX_DATASET_ITEMS:
        raise _invalid(f"the dataset has more than {MAX_DATASET_ITEMS} items")
    if not 1 <= draft.concurrency <= MAX_CONCURRENCY:
        raise _invalid(f"concurrency must be between 1 and {MAX_CONCURRENCY}")


def requested_versions(draft: EvaluationDraft, latest: int) -> list[int]:
    """The versions to evaluate, each once, in order (none asked: the latest)."""
    versions = list(dict.fromkeys(draft.versions or [latest]))
    if len(versions) > MAX_VERSIONS:
        raise _invalid(f"at most {MAX_VERSIONS} versions at once")
    return versions


def check_versions_found(name: str, missing: Sequence[int], latest: int) -> None:
    """422 ``unknown_versions`` naming every requested version the template lacks."""
    if missing:
        shown = ", ".join(str(v) for v in missing)
        raise ApiError(
            422,
            "unknown_versions",
            f"template {name!r} has no version {shown} (latest: {latest})",
            details={"versions": list(missing)},
        )


def evaluators_of(draft: EvaluationDraft) -> list[ev.EvaluatorSpec]:
    """The draft's evaluators, parsed with their defaults (422 naming a bad one)."""
    specs = ev.parse_evaluators(draft.evaluators)
    if len(specs) > MAX_EVALUATORS:
        raise _invalid(f"at most {MAX_EVALUATORS} evaluators")
    return specs


def check_expected(specs: Sequence[ev.EvaluatorSpec], dataset: Sequence[DatasetItem]) -> None:
    """422 ``expected_missing`` when an evaluator compares with ``expected`` an item lacks."""
    lacking = [i for i, item in enumerate(dataset) if item.expected is None]
    for spec in specs:
        if spec.needs_expected and lacking:
            shown = ", ".join(str(i) for i in lacking[:EXPECTED_MISSING_SHOWN]) + (
                ", ..." if len(lacking) > EXPECTED_MISSING_SHOWN else ""
            )
            raise ApiError(
                422,
                "expected_missing",
                f"evaluator {spec.name!r} compares outputs with 'expected', which dataset "
                f"items {shown} lack",
                details={"evaluator": spec.name, "items": lacking},
            )


def render_all(
    templates: Sequence[VersionTemplate], dataset: Sequence[DatasetItem]
) -> dict[tuple[int, int], list[BaseMessage]]:
    """Every item rendered with every version, up front: a bad item fails the request.

    The error names the item and the version (``details.item``, ``details.version``).
    """
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


def with_judge_model(specs: Sequence[ev.EvaluatorSpec], model: str) -> list[ev.EvaluatorSpec]:
    """The judge stored with the model it resolved to (the default's name when none given)."""
    return [replace(s, model=model) if s.name == "judge" else s for s in specs]
