"""The pure planner of prompt evaluations: the request's checks, rendering, the params merge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage

from core.errors import ApiError
from prompts import evaluation_plan as ep
from prompts import evaluators as ev
from prompts.errors import PromptError
from prompts.render import build_prompt, normalize_messages, render_messages


def draft(items: int = 1, **overrides: Any) -> ep.EvaluationDraft:
    values: dict[str, Any] = {
        "dataset": [ep.DatasetItem(variables={"word": f"w{i}"}) for i in range(items)]
    }
    values.update(overrides)
    return ep.EvaluationDraft(**values)


# --- bounds, versions, evaluators ------------------------------------------------------------


def test_bounds_of_the_dataset_and_the_concurrency() -> None:
    ep.check_bounds(draft(1))
    ep.check_bounds(draft(ep.MAX_DATASET_ITEMS, concurrency=ep.MAX_CONCURRENCY))
    with pytest.raises(ApiError, match="at least one item") as empty:
        ep.check_bounds(draft(0))
    assert (empty.value.status_code, empty.value.code) == (422, "invalid_request")
    with pytest.raises(ApiError, match=f"more than {ep.MAX_DATASET_ITEMS} items"):
        ep.check_bounds(draft(ep.MAX_DATASET_ITEMS + 1))
    for concurrency in (0, -1, ep.MAX_CONCURRENCY + 1):
        with pytest.raises(ApiError, match="concurrency must be between 1 and"):
            ep.check_bounds(draft(concurrency=concurrency))


def test_versions_default_to_the_latest_and_are_deduplicated_in_order() -> None:
    assert ep.requested_versions(draft(), latest=7) == [7]
    assert ep.requested_versions(draft(versions=[]), latest=7) == [7]
    assert ep.requested_versions(draft(versions=[3, 1, 3, 2, 1]), latest=7) == [3, 1, 2]
    many = list(range(1, ep.MAX_VERSIONS + 1))
    assert ep.requested_versions(draft(versions=many + many), latest=99) == many
    with pytest.raises(ApiError, match=f"at most {ep.MAX_VERSIONS} versions") as error:
        ep.requested_versions(draft(versions=[*many, 99]), latest=99)
    assert error.value.code == "invalid_request"


def test_unknown_versions_are_all_named() -> None:
    ep.check_versions_found("greet", [], latest=2)
    with pytest.raises(ApiError) as error:
        ep.check_versions_found("greet", [5, 9], latest=2)
    assert (error.value.status_code, error.value.code) == (422, "unknown_versions")
    assert error.value.message == "template 'greet' has no version 5, 9 (latest: 2)"
    assert error.value.details == {"versions": [5, 9]}


def test_evaluators_are_parsed_with_their_defaults() -> None:
    specs = ep.evaluators_of(draft(evaluators=["exact", {"name": "judge"}]))
    assert [s.name for s in specs] == ["exact", "judge"]
    assert specs[1].rubric == ev.DEFAULT_RUBRIC
    assert ep.evaluators_of(draft()) == []
    with pytest.raises(PromptError) as error:
        ep.evaluators_of(draft(evaluators=["exact", "exact"]))
    assert error.value.code == "duplicate_evaluator"


def test_judge_is_stored_with_the_model_it_resolved_to() -> None:
    specs = ev.parse_evaluators(["exact", "judge"])
    assert specs[1].model is None
    resolved = ep.with_judge_model(specs, "gpt-4o-mini")
    assert [s.model for s in resolved] == [None, "gpt-4o-mini"]
    assert resolved[0] is specs[0] and specs[1].model is None  # the input is left alone


# --- expected -------------------------------------------------------------------------------


def test_expected_is_required_only_by_the_evaluators_that_compare() -> None:
    dataset = [ep.DatasetItem({"word": "a"}, expected="A"), ep.DatasetItem({"word": "b"})]
    ep.check_expected(ev.parse_evaluators(["length", "judge"]), dataset)  # no comparison
    ep.check_expected(ev.parse_evaluators(["exact"]), dataset[:1])  # every item has one
    for name in ("exact", "contains", "similarity"):
        with pytest.raises(ApiError) as error:
            ep.check_expected(ev.parse_evaluators(["length", name]), dataset)
        assert (error.value.status_code, error.value.code) == (422, "expected_missing")
        assert error.value.details == {"evaluator": name, "items": [1]}
        assert f"evaluator {name!r}" in error.value.message
        assert error.value.message.endswith("dataset items 1 lack")


def test_expected_missing_names_the_first_items_and_details_all() -> None:
    dataset = [ep.DatasetItem({}) for _ in range(ep.EXPECTED_MISSING_SHOWN + 5)]
    with pytest.raises(ApiError) as error:
        ep.check_expected(ev.parse_evaluators(["exact"]), dataset)
    shown = ", ".join(str(i) for i in range(ep.EXPECTED_MISSING_SHOWN))
    assert f"items {shown}, ... lack" in error.value.message
    assert error.value.details["items"] == list(range(len(dataset)))


# --- rendering ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """A template version as the planner sees it (``ResolvedTemplate``'s shape)."""

    version: int
    text: str

    def render(self, variables: Mapping[str, Any]) -> list[BaseMessage]:
        prompt = build_prompt(
            normalize_messages([{"role": "user", "content": self.text}]), "f-string"
        )
        return render_messages(prompt, variables)


def test_every_item_is_rendered_with_every_version() -> None:
    dataset = [ep.DatasetItem({"word": "hi"}), ep.DatasetItem({"word": "yo"})]
    rendered = ep.render_all([Version(1, "Say {word}"), Version(3, "Shout {word}!")], dataset)
    assert {key: [m.text for m in messages] for key, messages in rendered.items()} == {
        (1, 0): ["Say hi"],
        (3, 0): ["Shout hi!"],
        (1, 1): ["Say yo"],
        (3, 1): ["Shout yo!"],
    }
    assert all(isinstance(m, HumanMessage) for ms in rendered.values() for m in ms)


def test_a_render_error_names_the_item_and_the_version() -> None:
    dataset = [ep.DatasetItem({"word": "hi"}), ep.DatasetItem({"other": "x"})]
    with pytest.raises(PromptError) as error:
        ep.render_all([Version(1, "Say {word}"), Version(2, "Say {word}")], dataset)
    assert (error.value.status_code, error.value.code) == (422, "missing_variables")
    assert error.value.message.startswith("dataset[1] with version 1: ")
    assert error.value.details == {"variables": ["word"], "item": 1, "version": 1}


# --- the stored request ---------------------------------------------------------------------


def test_the_stored_request_round_trips() -> None:
    submitted = ep.EvaluationDraft(
        dataset=[ep.DatasetItem({"word": "hi"}, expected="HI"), ep.DatasetItem({"word": "yo"})],
        evaluators=["exact", {"name": "length", "unit": "words"}],
        model="gpt-4o-mini",
        params={"temperature": 0.5, "seed": None},
        concurrency=2,
    )
    specs = ep.evaluators_of(submitted)
    stored = submitted.to_json(specs, [2, 1])
    assert stored["params"] == {"temperature": 0.5}  # None is not stored
    assert stored["evaluators"] == [
        {"name": "exact", "ignore_case": True},
        {"name": "length", "unit": "words"},
    ]
    again = ep.EvaluationDraft.from_json(stored)
    assert again.versions == [2, 1] and again.model == "gpt-4o-mini" and again.concurrency == 2
    assert list(again.dataset) == list(submitted.dataset)
    assert ep.evaluators_of(again) == specs
    assert again.to_json(specs, [2, 1]) == stored
