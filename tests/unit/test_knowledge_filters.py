"""Chroma ``where`` filters are validated before they reach Chroma; RRF merges rankings."""

from __future__ import annotations

import pytest

from knowledge.filters import InvalidFilter, validate_filter
from knowledge.fusion import reciprocal_rank_fusion
from knowledge.metadata import InvalidMetadata, validate_user_metadata


@pytest.mark.parametrize(
    "where",
    [
        {"team": "hr"},
        {"year": {"$gte": 2024}},
        {"team": {"$in": ["hr", "it"]}},
        {"$and": [{"team": "hr"}, {"year": {"$lt": 2030}}]},
        {"$or": [{"a": True}, {"$and": [{"b": 1}, {"c": {"$ne": "x"}}]}]},
    ],
)
def test_valid_filters_pass(where: dict) -> None:
    assert validate_filter(where) is where


@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        ({}, "non-empty"),
        ([], "non-empty"),
        ({"a": 1, "b": 2}, "one key"),
        ({"$and": [{"a": 1}]}, "at least two"),
        ({"$not": [{"a": 1}, {"b": 1}]}, "unknown operator"),
        ({"a": {"$like": "x"}}, "unknown operator"),
        ({"a": {"$gt": "x"}}, "numbers only"),
        ({"a": {"$in": []}}, "non-empty list"),
        ({"a": [1, 2]}, "string, number or boolean"),
        ({"a": {"$eq": 1, "$ne": 2}}, "exactly one operator"),
        ({"$or": [{"a": 1}, "b"]}, "filter object"),
    ],
)
def test_invalid_filters_name_the_problem(where: object, fragment: str) -> None:
    with pytest.raises(InvalidFilter, match=fragment):
        validate_filter(where)


def test_deep_nesting_is_refused() -> None:
    where: dict = {"a": 1}
    for _ in range(12):
        where = {"$and": [where, {"b": 1}]}
    with pytest.raises(InvalidFilter, match="deeply"):
        validate_filter(where)


def test_rrf_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]])
    assert [item for item, _ in fused][:2] == ["b", "a"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


def test_user_metadata_rules() -> None:
    assert validate_user_metadata({"team": "hr", "n": 1, "ok": True}) == {
        "team": "hr",
        "n": 1,
        "ok": True,
    }
    assert validate_user_metadata(None) == {}
    for bad in ({"a": {"b": 1}}, {"a": [1]}, {"document_id": "x"}, {"$x": 1}, "str"):
        with pytest.raises(InvalidMetadata):
            validate_user_metadata(bad)
