"""The evaluators of a prompt evaluation: what they are, their options, how they score.

An evaluator is named by a string (``"exact"``) or an object with options
(``{"name": "judge", "model": "gpt-4o", "rubric": "..."}``). Scores, per dataset item:

- ``exact``: 1.0 when the output equals ``expected``, else 0.0 (whitespace collapsed and
  trimmed; case ignored unless ``ignore_case: false``);
- ``contains``: 1.0 when the output contains ``expected`` (same normalization);
- ``similarity``: the cosine similarity of the embeddings of output and ``expected``
  (``model``: the embedding model, the local embedder by default);
- ``length``: the output's length in ``unit``: ``characters`` (default), ``words`` or
  ``tokens`` (tiktoken, for the evaluated model);
- ``judge``: an LLM grades the output from 0 to 10 against a ``rubric`` (and ``expected``
  when the item has one); the score is that grade / 10, so in [0, 1]. The judge is asked
  for ``{"score": <0-10>, "reason": "..."}``; :func:`parse_verdict` also takes a fenced or
  embedded JSON object, ``Score: 8``, ``8/10`` or a bare ``8``, and gives no score (an
  evaluator error) for anything else.

No I/O here: the service makes the calls (embeddings, the judge's model) and hands the
results to these functions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from core.tokenizer import count_text_tokens
from prompts.errors import PromptError, names

EvaluatorName = Literal["exact", "contains", "similarity", "length", "judge"]
LengthUnit = Literal["characters", "words", "tokens"]

EVALUATORS: tuple[EvaluatorName, ...] = ("exact", "contains", "similarity", "length", "judge")
NEEDS_EXPECTED: frozenset[str] = frozenset({"exact", "contains", "similarity"})
LENGTH_UNITS: tuple[LengthUnit, ...] = ("characters", "words", "tokens")
OPTIONS: Mapping[str, frozenset[str]] = {
    "exact": frozenset({"ignore_case"}),
    "contains": frozenset({"ignore_case"}),
    "similarity": frozenset({"model"}),
    "length": frozenset({"unit"}),
    "judge": frozenset({"model", "rubric"}),
}
MAX_DATASET_ITEMS = 200
MAX_VERSIONS = 10
MAX_EVALUATORS = 10
MAX_CONCURRENCY = 16
DEFAULT_CONCURRENCY = 4
"""Bounds of one evaluation request (items, versions, evaluators, calls at once)."""
DEFAULT_EMBEDDING_MODEL = "local"
DEFAULT_RUBRIC = (
    "Is the output correct, complete and helpful for the input? When a reference answer is "
    "given, does the output agree with it?"
)
MAX_RUBRIC_CHARS = 4000
JUDGE_SCALE = 10.0
JUDGE_MAX_TOKENS = 256
JUDGE_FIELD_CHARS = 8000
"""Input, reference and output are cut to this many characters in the judge's prompt."""

JUDGE_SYSTEM = (
    "You are a strict, impartial evaluator of an AI assistant's output. Grade the OUTPUT "
    "against the RUBRIC (and the REFERENCE ANSWER when there is one). Reply with a JSON "
    "object only, no other text: "
    '{"score": <integer from 0 (worst) to 10 (best)>, "reason": "<one short sentence>"}'
)


@dataclass(frozen=True)
class EvaluatorSpec:
    """One evaluator of an evaluation, with its options (defaults filled in)."""

    name: EvaluatorName
    ignore_case: bool = True
    unit: LengthUnit = "characters"
    model: str | None = None
    """``similarity``: the embedding model; ``judge``: the chat model (None: the default)."""
    rubric: str = DEFAULT_RUBRIC

    @property
    def needs_expected(self) -> bool:
        """Whether every dataset item must give ``expected``."""
        return self.name in NEEDS_EXPECTED

    @property
    def embedding_model(self) -> str:
        """The similarity evaluator's embedding model."""
        return self.model or DEFAULT_EMBEDDING_MODEL

    def to_json(self) -> dict[str, Any]:
        """The normalized form, with the options this evaluator uses (stored, shown)."""
        if self.name in ("exact", "contains"):
            return {"name": self.name, "ignore_case": self.ignore_case}
        if self.name == "similarity":
            return {"name": self.name, "model": self.embedding_model}
        if self.name == "length":
            return {"name": self.name, "unit": self.unit}
        return {"name": self.name, "model": self.model, "rubric": self.rubric}


def _invalid(message: str, evaluator: str, code: str = "invalid_evaluator") -> PromptError:
    return PromptError(code, message, details={"evaluator": evaluator})


def parse_evaluator(raw: str | Mapping[str, Any]) -> EvaluatorSpec:
    """One evaluator from its name or its object (422 naming what is wrong)."""
    options: dict[str, Any] = {"name": raw} if isinstance(raw, str) else dict(raw)
    name = options.pop("name", None)
    if not isinstance(name, str) or name not in EVALUATORS:
        shown = name if isinstance(name, str) else repr(name)
        raise _invalid(
            f"unknown evaluator {shown!r}; known: {', '.join(EVALUATORS)}",
            str(shown),
            code="unknown_evaluator",
        )
    options = {k: v for k, v in options.items() if v is not None}
    if unknown := set(options) - OPTIONS[name]:
        allowed = names(OPTIONS[name])
        raise _invalid(
            f"evaluator {name!r} has no option {names(unknown)} (it takes: {allowed})", name
        )
    values: dict[str, Any] = {}
    if "ignore_case" in options:
        if not isinstance(options["ignore_case"], bool):
            raise _invalid(f"evaluator {name!r}: ignore_case must be true or false", name)
        values["ignore_case"] = options["ignore_case"]
    if "unit" in options:
        if options["unit"] not in LENGTH_UNITS:
            raise _invalid(
                f"evaluator {name!r}: unit must be one of {', '.join(LENGTH_UNITS)}", name
            )
        values["unit"] = options["unit"]
    if "model" in options:
        model = options["model"]
        if not isinstance(model, str) or not model.strip() or len(model) > 128:
            raise _invalid(f"evaluator {name!r}: model must be a model name", name)
        values["model"] = model
    if "rubric" in options:
        rubric = options["rubric"]
        if not isinstance(rubric, str) or not rubric.strip() or len(rubric) > MAX_RUBRIC_CHARS:
            raise _invalid(
                f"evaluator {name!r}: rubric must be a non-empty text of at most "
                f"{MAX_RUBRIC_CHARS} characters",
                name,
            )
        values["rubric"] = rubric.strip()
    return EvaluatorSpec(name=cast(EvaluatorName, name), **values)


def parse_evaluators(raw: Sequence[str | Mapping[str, Any]]) -> list[EvaluatorSpec]:
    """Every evaluator of a request; a name may appear once (422 otherwise)."""
    specs = [parse_evaluator(item) for item in raw]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise _invalid(
                f"evaluator {spec.name!r} is given more than once", spec.name, "duplicate_evaluator"
            )
        seen.add(spec.name)
    return specs


# --- scores ---------------------------------------------------------------------------


def normalize_text(text: str, *, ignore_case: bool = True) -> str:
    """Trimmed, inner whitespace collapsed to single spaces, casefolded unless told not to."""
    collapsed = " ".join(text.split())
    return collapsed.casefold() if ignore_case else collapsed


def exact_match(output: str, expected: str, *, ignore_case: bool = True) -> float:
    """1.0 when the normalized texts are equal."""
    same = normalize_text(output, ignore_case=ignore_case) == normalize_text(
        expected, ignore_case=ignore_case
    )
    return 1.0 if same else 0.0


def contains_match(output: str, expected: str, *, ignore_case: bool = True) -> float:
    """1.0 when the normalized output contains the normalized ``expected``."""
    needle = normalize_text(expected, ignore_case=ignore_case)
    return 1.0 if needle in normalize_text(output, ignore_case=ignore_case) else 0.0


def output_length(output: str, unit: LengthUnit = "characters", *, model: str = "") -> float:
    """The output's length in characters, words or tokens (tiktoken for ``model``)."""
    if unit == "words":
        return float(len(output.split()))
    if unit == "tokens":
        return float(count_text_tokens(output, model or "gpt-4o-mini"))
    return float(len(output))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors (0.0 when either is zero or they differ in size)."""
    if len(a) != len(b) or not a:
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    if norm == 0:
        return 0.0
    return max(-1.0, min(1.0, dot / norm))


def score(spec: EvaluatorSpec, output: str, expected: str | None, *, model: str = "") -> float:
    """The score of the evaluators that need no call (exact, contains, length)."""
    if spec.name == "length":
        return output_length(output, spec.unit, model=model)
    if spec.name not in ("exact", "contains"):
        raise ValueError(f"evaluator {spec.name!r} makes a model call: the service scores it")
    if expected is None:
        raise ValueError(f"evaluator {spec.name!r} needs an expected value")
    if spec.name == "exact":
        return exact_match(output, expected, ignore_case=spec.ignore_case)
    return contains_match(output, expected, ignore_case=spec.ignore_case)


# --- the judge ------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A judge's answer: ``score`` in [0, 1] (``grade`` / 10), or None when unreadable."""

    score: float | None
    grade: float | None
    reason: str | None


def _cut(text: str, limit: int = JUDGE_FIELD_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + " […]"


def judge_messages(
    rubric: str, prompt: Sequence[BaseMessage], output: str, expected: str | None
) -> list[BaseMessage]:
    """The judge's prompt: rubric, the rendered input, the reference (if any), the output.

    Built as messages, not as a template: braces in any of the texts stay literal.
    """
    shown = "\n".join(f"{m.type}: {m.text}" for m in prompt)
    parts = [f"RUBRIC:\n{rubric}", f"INPUT (the messages the assistant was given):\n{_cut(shown)}"]
    if expected is not None:
        parts.append(f"REFERENCE ANSWER:\n{_cut(expected)}")
    parts.append(f"OUTPUT:\n{_cut(output)}")
    return [SystemMessage(content=JUDGE_SYSTEM), HumanMessage(content="\n\n".join(parts))]


_NUMBER = r"(-?\d+(?:\.\d+)?)"
_SCALE = r"(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?"
_BARE = re.compile(rf"^\s*{_NUMBER}{_SCALE}\s*[.!]?\s*$", re.IGNORECASE)
_LABELLED = re.compile(
    rf"\b(?:score|rating|grade)\b\W{{0,3}}[:=]\s*\**\s*{_NUMBER}{_SCALE}", re.IGNORECASE
)
_SCORE_KEYS = ("score", "rating", "grade")
_REASON_KEYS = ("reason", "explanation", "rationale", "justification")
_REASON_CHARS = 500


def _grade(value: float, scale: str | None) -> float | None:
    """A grade on 0..10 from a value and its optional scale (``8/10``, ``4 out of 5``)."""
    if scale is not None:
        top = float(scale)
        if top <= 0:
            return None
        value = value / top * JUDGE_SCALE
    if not math.isfinite(value) or value < 0 or value > JUDGE_SCALE:
        return None
    return value


def _grade_of(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _grade(float(value), None)
    if isinstance(value, str) and (match := _BARE.match(value)):
        return _grade(float(match.group(1)), match.group(2))
    return None


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object that starts somewhere in ``text`` (fences and prose around ignored)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def parse_verdict(text: str) -> Verdict:
    """Read a judge's answer (see the module doc for what is understood)."""
    for obj in _json_objects(text):
        lowered = {str(k).lower(): v for k, v in obj.items()}
        key = next((k for k in _SCORE_KEYS if k in lowered), None)
        if key is None:
            continue
        grade = _grade_of(lowered[key])
        reason = next((lowered[k] for k in _REASON_KEYS if isinstance(lowered.get(k), str)), None)
        return _verdict(grade, reason)
    stripped = text.strip()
    if match := _BARE.match(stripped):
        return _verdict(_grade(float(match.group(1)), match.group(2)), None)
    labelled = list(_LABELLED.finditer(stripped))
    if labelled:
        last = labelled[-1]  # a verdict comes after its reasoning
        return _verdict(_grade(float(last.group(1)), last.group(2)), stripped)
    return Verdict(score=None, grade=None, reason=_cut(stripped, _REASON_CHARS) or None)


def _verdict(grade: float | None, reason: str | None) -> Verdict:
    return Verdict(
        score=None if grade is None else round(grade / JUDGE_SCALE, 6),
        grade=grade,
        reason=_cut(reason, _REASON_CHARS) if reason else None,
    )


# --- summary statistics ---------------------------------------------------------------


def mean(values: Sequence[float]) -> float | None:
    """The arithmetic mean (None for no values)."""
    return sum(values) / len(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100), linearly interpolated like numpy's default."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
