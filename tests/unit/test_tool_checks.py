"""Tool-calling checks and embedding inputs: pure functions, no service."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import ApiError
from providers.registry import ModelRoute, Upstream
from providers.relay import RelayOutcome, merge_call_pieces
from services.embeddings import MAX_INPUTS, input_texts
from services.gateway_types import ChatRequest, parse_messages
from services.openai_format import call_deltas
from services.tool_checks import check_tools, uses_tools

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def request(messages: list[dict[str, Any]] | None = None, **params: Any) -> ChatRequest:
    return ChatRequest(
        messages=parse_messages(messages or [{"role": "user", "content": "x"}]), params=params
    )


def test_uses_tools() -> None:
    assert not uses_tools(request())
    assert not uses_tools(request(response_format={"type": "json_object"}))
    assert uses_tools(request(tools=[TOOL]))
    assert uses_tools(request(parallel_tool_calls=False))
    exchange = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
    ]
    assert uses_tools(request(exchange))
    check_tools(
        request(exchange, tools=[TOOL], tool_choice={"type": "function", "function": {"name": "f"}})
    )


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"tools": "f"}, "tools"),
        ({"tools": [1]}, "tools[0]"),
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {}}}, "tool_choice"),
        ({"response_format": "json"}, "response_format"),
    ],
)
def test_refusals_name_the_field(params: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as info:
        check_tools(request(**params))
    assert info.value.status_code == 400 and info.value.details["param"] == param


def test_other_tool_kinds_and_keywords_pass() -> None:
    check_tools(request(tools=[TOOL, {"type": "web_search"}], tool_choice="required"))
    check_tools(request(response_format={"type": "json_schema", "json_schema": {"name": "x"}}))


def test_streamed_calls_merge_and_replay_alike() -> None:
    route = ModelRoute("m", "m", Upstream("openai", "http://x", "k"))
    outcome = RelayOutcome(route=route, text=[])
    pieces = [
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "c0",
                    "type": "function",
                    "function": {"name": "f", "arguments": ""},
                }
            ]
        },
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "g", "arguments": "{"},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]},
        {
            "tool_calls": [
                {"index": 0, "function": {"arguments": "1}"}},
                {"index": 1, "function": {"arguments": "}"}},
            ]
        },
    ]
    for piece in pieces:
        merge_call_pieces(outcome, piece)
    calls = outcome.tool_calls
    assert calls == [
        {"id": "c0", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
        {"id": "c1", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    replay = RelayOutcome(route=route, text=[])
    for delta in call_deltas({"tool_calls": calls}):
        merge_call_pieces(replay, delta)
    assert replay.tool_calls == calls


def test_embedding_inputs() -> None:
    assert input_texts("a") == ["a"]
    assert input_texts(["a", "b"]) == ["a", "b"]
    assert input_texts([15339, 1917]) == ["hello world"]
    assert input_texts([[15339], [1917]]) == ["hello", " world"]
    for bad in ("", [], [""], [[]], ["x"] * (MAX_INPUTS + 1), [[-1]]):
        with pytest.raises(ApiError) as info:
            input_texts(bad)  # type: ignore[arg-type]
        assert info.value.status_code == 400


def test_tool_result_may_answer_a_call_of_an_earlier_turn() -> None:
    from services.gateway_types import ChatMessage
    from services.tool_checks import check_exchange

    result = ChatMessage.model_validate({"role": "tool", "tool_call_id": "c1", "content": "x"})
    check_exchange([result], earlier=["c1"])  # the thread's earlier call: valid
    with pytest.raises(ApiError) as info:
        check_exchange([result], earlier=["c2"])
    assert info.value.details == {"param": "messages[0].tool_call_id"}
