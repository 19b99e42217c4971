"""Metadata filters in Chroma's ``where`` syntax, validated before they reach Chroma.

Chroma answers a malformed filter with an exception deep in a query; the API must answer
422 naming what is wrong instead. Accepted: ``{"field": value}`` (equality),
``{"field": {"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte": value}}``,
``{"field": {"$in"|"$nin": [values]}}`` and ``{"$and"|"$or": [filter, filter, ...]}``.
"""

from __future__ import annotations

from typing import Any

COMPARISONS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
MEMBERSHIP = frozenset({"$in", "$nin"})
LOGICAL = frozenset({"$and", "$or"})
_MAX_DEPTH = 8
Scalar = str | int | float | bool


class InvalidFilter(ValueError):
    """A filter Chroma would not understand; the message says where."""


def validate_filter(where: Any) -> dict[str, Any]:
    """Return ``where`` when it is a valid Chroma filter, else raise :class:`InvalidFilter`."""
    if not isinstance(where, dict) or not where:
        raise InvalidFilter("filter must be a non-empty JSON object")
    _check(where, "filter", 0)
    return where


def _check(node: dict[str, Any], path: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise InvalidFilter(f"{path}: nested too deeply (at most {_MAX_DEPTH} levels)")
    if len(node) != 1:
        raise InvalidFilter(
            f"{path}: one key per object (combine conditions with $and/$or), got {len(node)}"
        )
    ((key, value),) = node.items()
    if key in LOGICAL:
        if not isinstance(value, list) or len(value) < 2:
            raise InvalidFilter(f"{path}.{key}: needs a list of at least two filters")
        for i, item in enumerate(value):
            if not isinstance(item, dict) or not item:
                raise InvalidFilter(f"{path}.{key}[{i}]: must be a filter object")
            _check(item, f"{path}.{key}[{i}]", depth + 1)
        return
    if key.startswith("$"):
        raise InvalidFilter(f"{path}: unknown operator {key!r} (use $and or $or at this level)")
    if not key:
        raise InvalidFilter(f"{path}: empty field name")
    if isinstance(value, dict):
        _check_condition(value, f"{path}.{key}")
    elif not _is_scalar(value):
        raise InvalidFilter(f"{path}.{key}: value must be a string, number or boolean")


def _check_condition(condition: dict[str, Any], path: str) -> None:
    if len(condition) != 1:
        raise InvalidFilter(f"{path}: exactly one operator per field, got {len(condition)}")
    ((op, value),) = condition.items()
    if op in COMPARISONS:
        if not _is_scalar(value):
            raise InvalidFilter(f"{path}.{op}: value must be a string, number or boolean")
        if op in ("$gt", "$gte", "$lt", "$lte") and isinstance(value, bool | str):
            raise InvalidFilter(f"{path}.{op}: compares numbers only")
        return
    if op in MEMBERSHIP:
        if not isinstance(value, list) or not value or not all(_is_scalar(v) for v in value):
            raise InvalidFilter(f"{path}.{op}: needs a non-empty list of strings or numbers")
        return
    known = ", ".join(sorted(COMPARISONS | MEMBERSHIP))
    raise InvalidFilter(f"{path}: unknown operator {op!r} (known: {known})")


def _is_scalar(value: Any) -> bool:
    return isinstance(value, Scalar) and not (isinstance(value, float) and value != value)
