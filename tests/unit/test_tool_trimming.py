"""Trimming a thread with tool exchanges: a tool result never loses the call it answers."""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from chains.trimming import trim_history


def _exchange(i: int, words: int = 40) -> list[BaseMessage]:
    call = {"name": "lookup", "args": {"q": f"q{i} " + "w " * words}, "id": f"call-{i}"}
    return [
        HumanMessage(f"question {i} " + "word " * words),
        AIMessage("", tool_calls=[call]),
        ToolMessage(f"result {i} " + "word " * words, tool_call_id=f"call-{i}"),
        AIMessage(f"answer {i}"),
    ]


def _paired(messages: list[BaseMessage]) -> bool:
    asked = {c["id"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}
    return all(m.tool_call_id in asked for m in messages if isinstance(m, ToolMessage))


def test_windows_keep_tool_results_with_their_calls() -> None:
    history: list[BaseMessage] = [SystemMessage("sys")]
    for i in range(30):
        history += _exchange(i)
    for budget in range(120, 2000, 37):
        trimmed = trim_history(history, budget=budget, model="gpt-4o-mini")
        assert trimmed[0].type == "system" and trimmed[1].type == "human"
        assert _paired(trimmed), budget


def test_tool_calls_count_in_the_budget() -> None:
    big_call = {"name": "lookup", "args": {"q": "w " * 600}, "id": "call-big"}
    history: list[BaseMessage] = [
        HumanMessage("first"),
        AIMessage("", tool_calls=[big_call]),
        ToolMessage("ok", tool_call_id="call-big"),
        AIMessage("done"),
        *_exchange(1, words=5),
    ]
    trimmed = trim_history(history, budget=300, model="gpt-4o-mini")
    assert trimmed == history[4:]  # the first exchange's big call arguments do not fit


def test_oversized_turn_with_tool_results_keeps_the_exchange() -> None:
    """A turn that sends only tool results, its question over budget: not a lone result."""
    history: list[BaseMessage] = [SystemMessage("sys"), *_exchange(0, words=3000)[:3]]
    trimmed = trim_history(history, budget=100, model="gpt-4o-mini")
    assert [m.type for m in trimmed] == ["system", "human", "ai", "tool"]
    assert _paired(trimmed)
