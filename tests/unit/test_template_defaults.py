"""One rule for a template's defaults, whatever the flow (chat, threads, RAG, playground, evals)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.template_use import apply_template_defaults


@dataclass
class Template:
    model: str | None = "gpt-4"
    params: Mapping[str, Any] = field(
        default_factory=lambda: {"temperature": 0.7, "max_tokens": 50, "stop": ["\n\n"], "seed": 3}
    )


def test_the_template_fills_what_the_request_lacks() -> None:
    assert apply_template_defaults(Template(), {}) == {
        "model": "gpt-4",
        "temperature": 0.7,
        "max_tokens": 50,
        "stop": ["\n\n"],
        "seed": 3,
    }


def test_the_request_wins() -> None:
    given = {"model": "gpt-4o-mini", "temperature": 1.2, "stop": "END", "top_p": 0.5}
    assert apply_template_defaults(Template(), given) == {
        "model": "gpt-4o-mini",
        "temperature": 1.2,
        "stop": "END",
        "top_p": 0.5,
        "max_tokens": 50,
        "seed": 3,
    }


def test_an_explicit_null_counts_as_unset() -> None:
    merged = apply_template_defaults(Template(), {"model": None, "temperature": None})
    assert merged["model"] == "gpt-4" and merged["temperature"] == 0.7


def test_zero_is_a_value_not_unset() -> None:
    merged = apply_template_defaults(Template(), {"temperature": 0, "seed": 0})
    assert merged["temperature"] == 0 and merged["seed"] == 0


@pytest.mark.parametrize("cap", ["max_tokens", "max_completion_tokens"])
def test_a_request_cap_under_either_name_keeps_the_template_max_tokens_out(cap: str) -> None:
    merged = apply_template_defaults(Template(), {cap: 9})
    assert merged[cap] == 9
    assert "max_tokens" not in merged or cap == "max_tokens"


def test_stop_applies_like_any_param() -> None:
    assert apply_template_defaults(Template(), {"temperature": 1})["stop"] == ["\n\n"]


def test_null_template_params_and_no_template_add_nothing() -> None:
    template = Template(model=None, params={"temperature": None})
    assert apply_template_defaults(template, {"top_p": 1, "seed": None}) == {"top_p": 1}
    assert apply_template_defaults(None, {"model": "x", "stop": None}) == {"model": "x"}
