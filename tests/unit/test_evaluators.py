"""The evaluators of prompt evaluations: parsing, scores, the judge's verdicts, statistics."""

from __future__ import annotations

import math

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from api.prompt_schemas import EvaluationCreate
from prompts import evaluators as ev
from prompts.errors import PromptError


def test_names_and_objects_parse_with_defaults() -> None:
    specs = ev.parse_evaluators(
        [
            "exact",
            {"name": "contains", "ignore_case": False},
            {"name": "similarity"},
            {"name": "length", "unit": "tokens"},
            {"name": "judge", "model": "gpt-4o", "rubric": "  Be brief.  "},
        ]
    )
    assert [s.name for s in specs] == ["exact", "contains", "similarity", "length", "judge"]
    assert specs[0].ignore_case is True and specs[1].ignore_case is False
    assert specs[2].embedding_model == "local" and specs[3].unit == "tokens"
    assert specs[4].model == "gpt-4o" and specs[4].rubric == "Be brief."
    assert [s.needs_expected for s in specs] == [True, True, True, False, False]
    assert [s.to_json() for s in specs] == [
        {"name": "exact", "ignore_case": True},
        {"name": "contains", "ignore_case": False},
        {"name": "similarity", "model": "local"},
        {"name": "length", "unit": "tokens"},
        {"name": "judge", "model": "gpt-4o", "rubric": "Be brief."},
    ]
    assert ev.parse_evaluator("judge").rubric == ev.DEFAULT_RUBRIC
    assert (
        ev.parse_evaluator({"name": "length", "unit": None}).unit == "characters"
    )  # null: default
    # The stored form parses back to the same evaluators (a restart re-runs the request).
    assert [ev.parse_evaluator(s.to_json()).to_json() for s in specs] == [
        s.to_json() for s in specs
    ]


@pytest.mark.parametrize(
    ("raw", "code", "named"),
    [
        ("bleu", "unknown_evaluator", "bleu"),
        ({"model": "x"}, "unknown_evaluator", "None"),
        ({"name": "exact", "rubric": "r"}, "invalid_evaluator", "exact"),
        ({"name": "length", "unit": "pages"}, "invalid_evaluator", "length"),
        ({"name": "exact", "ignore_case": "yes"}, "invalid_evaluator", "exact"),
        ({"name": "judge", "rubric": "   "}, "invalid_evaluator", "judge"),
        ({"name": "judge", "model": ""}, "invalid_evaluator", "judge"),
        ({"name": "judge", "rubric": "x" * 4001}, "invalid_evaluator", "judge"),
    ],
)
def test_bad_evaluators_are_422s_that_name_them(raw: object, code: str, named: str) -> None:
    with pytest.raises(PromptError) as caught:
        ev.parse_evaluators([raw])  # type: ignore[list-item]
    assert caught.value.status_code == 422 and caught.value.code == code
    assert named in caught.value.message
    assert caught.value.details["evaluator"] == named


def test_an_evaluator_is_given_once() -> None:
    with pytest.raises(PromptError) as caught:
        ev.parse_evaluators(["exact", {"name": "exact", "ignore_case": False}])
    assert caught.value.code == "duplicate_evaluator" and "'exact'" in caught.value.message


def test_exact_and_contains_normalize_whitespace_and_case() -> None:
    assert ev.exact_match("  Paris\n", "paris") == 1.0
    assert ev.exact_match("The  capital is\tParis", "the capital is paris") == 1.0
    assert ev.exact_match("Paris", "paris", ignore_case=False) == 0.0
    assert ev.exact_match("Paris.", "Paris") == 0.0
    assert ev.contains_match("The capital of France is PARIS.", "paris") == 1.0
    assert ev.contains_match("The capital of France is PARIS.", "paris", ignore_case=False) == 0.0
    assert ev.contains_match("Lyon", "Paris") == 0.0
    assert ev.contains_match("anything", "") == 1.0
    spec = ev.parse_evaluator("exact")
    assert ev.score(spec, "ok", "OK") == 1.0
    with pytest.raises(ValueError, match="expected"):
        ev.score(spec, "ok", None)
    with pytest.raises(ValueError, match="model call"):
        ev.score(ev.parse_evaluator("judge"), "ok", None)


def test_length_in_characters_words_and_tokens() -> None:
    text = "Hello there, world!"
    assert ev.output_length(text) == 19.0
    assert ev.output_length(text, "words") == 3.0
    tokens = ev.output_length(text, "tokens", model="gpt-4o-mini")
    assert 3 <= tokens <= 6 and tokens == int(tokens)
    assert ev.score(ev.parse_evaluator({"name": "length", "unit": "words"}), "a b", None) == 2.0
    assert ev.output_length("") == 0.0


def test_cosine() -> None:
    assert ev.cosine([1.0, 0.0], [1.0, 0.0]) == pytest.approx(1.0)
    assert ev.cosine([1.0, 0.0], [0.0, 2.0]) == pytest.approx(0.0)
    assert ev.cosine([1.0, 1.0], [-2.0, -2.0]) == pytest.approx(-1.0)
    assert ev.cosine([3.0, 4.0], [4.0, 3.0]) == pytest.approx(24 / 25)
    assert ev.cosine([0.0, 0.0], [1.0, 0.0]) == 0.0  # a zero vector
    assert ev.cosine([1.0], [1.0, 0.0]) == 0.0  # sizes differ
    assert ev.cosine([], []) == 0.0


@pytest.mark.parametrize(
    ("answer", "grade", "reason"),
    [
        ('{"score": 8, "reason": "Mostly right."}', 8.0, "Mostly right."),
        ('```json\n{"score": 7.5, "reason": "ok"}\n```', 7.5, "ok"),
        ('Here is my grade: {"Score": "9/10", "explanation": "good"} Thanks.', 9.0, "good"),
        ('{"rating": 3}', 3.0, None),
        ('{"note": 1} then {"score": 6}', 6.0, None),
        ("8", 8.0, None),
        ("  8/10. ", 8.0, None),
        ("4 out of 5", 8.0, None),
        ("10", 10.0, None),
        ("0", 0.0, None),
        ("The output misses a detail.\nScore: 6", 6.0, "The output misses a detail.\nScore: 6"),
        ("**Score**: 9/10", 9.0, "**Score**: 9/10"),
        ("score = 2 at first... final score: 5", 5.0, "score = 2 at first... final score: 5"),
    ],
)
def test_judge_verdicts_are_read_robustly(answer: str, grade: float, reason: str | None) -> None:
    verdict = ev.parse_verdict(answer)
    assert verdict.grade == pytest.approx(grade)
    assert verdict.score == pytest.approx(grade / 10)
    assert verdict.reason == reason


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "I cannot grade this.",
        "11",
        "-1",
        '{"score": 42}',
        '{"score": true}',
        '{"score": "great"}',
        '{"reason": "no score"}',
        "8/0",
        "Rubric item 1 is met",  # a number, but no verdict
        '{"score": NaN}',
    ],
)
def test_unreadable_verdicts_have_no_score(answer: str) -> None:
    verdict = ev.parse_verdict(answer)
    assert verdict.score is None and verdict.grade is None


def test_judge_prompt_keeps_braces_literal_and_shows_the_reference() -> None:
    prompt = [SystemMessage(content="Be {terse}."), HumanMessage(content="Capital of {France}?")]
    messages = ev.judge_messages("Correct?", prompt, "Paris {x}", "Paris")
    assert messages[0].text == ev.JUDGE_SYSTEM and '"score"' in ev.JUDGE_SYSTEM
    text = messages[1].text
    assert "RUBRIC:\nCorrect?" in text
    assert "system: Be {terse}.\nhuman: Capital of {France}?" in text
    assert "REFERENCE ANSWER:\nParis" in text and text.endswith("OUTPUT:\nParis {x}")
    without = ev.judge_messages("Correct?", prompt, "Paris", None)[1].text
    assert "REFERENCE" not in without
    long = ev.judge_messages("r", prompt, "x" * 20_000, None)[1].text
    assert len(long) < 10_000 and long.endswith("[…]")


def test_mean_and_percentiles() -> None:
    assert ev.mean([]) is None and ev.percentile([], 50) is None
    assert ev.mean([1.0, 2.0, 6.0]) == 3.0
    values = [float(v) for v in range(1, 11)]  # 1..10, like numpy.percentile
    assert ev.percentile(values, 50) == pytest.approx(5.5)
    assert ev.percentile(values, 95) == pytest.approx(9.55)
    assert ev.percentile(values, 0) == 1.0 and ev.percentile(values, 100) == 10.0
    assert ev.percentile([7.0], 95) == 7.0
    assert ev.percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    assert not math.isnan(ev.percentile([1.0, 1.0], 95) or 0)


def test_request_bounds_match_the_schema() -> None:
    fields = EvaluationCreate.model_fields
    bounds = {name: {type(m).__name__: m for m in fields[name].metadata} for name in fields}
    assert bounds["dataset"]["MaxLen"].max_length == ev.MAX_DATASET_ITEMS
    assert bounds["versions"]["MaxLen"].max_length == ev.MAX_VERSIONS
    assert bounds["evaluators"]["MaxLen"].max_length == ev.MAX_EVALUATORS
    assert bounds["concurrency"]["Le"].le == ev.MAX_CONCURRENCY
    assert fields["concurrency"].default == ev.DEFAULT_CONCURRENCY
