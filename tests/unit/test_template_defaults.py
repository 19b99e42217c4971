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
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
JSON = {"type": "json_object"}


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


def test_the_template_tools_and_format_apply_when_the_request_sets_none() -> None:
    merged = apply_template_defaults(
        Template(tools=[WEATHER], response_format=JSON), {"tool_choice": "required"}
    )
    assert merged["tools"] == [WEATHER] and merged["response_format"] == JSON
    assert merged["tool_choice"] == "required"


@pytest.mark.parametrize("offer", [{"tools": [CLOCK]}, {"functions": [{"name": "get_time"}]}])
def test_a_request_offering_its_own_tools_keeps_the_template_tools_out(
    offer: dict[str, Any],
) -> None:
    merged = apply_template_defaults(Template(tools=[WEATHER]), offer)
    assert "tools" not in merged or merged["tools"] == [CLOCK]
    assert all(merged[k] == v for k, v in offer.items())


def test_the_request_response_format_wins_and_null_counts_as_unset() -> None:
    template = Template(tools=[WEATHER], response_format=JSON)
    text = {"type": "text"}
    assert apply_template_defaults(template, {"response_format": text})["response_format"] == text
    merged = apply_template_defaults(template, {"response_format": None, "tools": None})
    assert merged["response_format"] == JSON and merged["tools"] == [WEATHER]


def test_the_template_tools_are_copies() -> None:
    template = Template(tools=[WEATHER])
    apply_template_defaults(template, {})["tools"][0]["type"] = "changed"
    assert template.tools == [WEATHER] and WEATHER["type"] == "function"
