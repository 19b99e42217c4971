"""The memory policy: trimming to the context budget and the one-system-message rule."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from chains.trimming import prompt_budget, trim_history
from graphs.chat.state import ChatInput, merge_messages


def test_budget_reserves_the_reply() -> None:
    assert prompt_budget(8192, 1000, 512) == 7192
    assert prompt_budget(8192, None, 512) == 7680


def test_trim_keeps_system_and_most_recent_turns() -> None:
    history = [SystemMessage("be brief")]
    for i in range(50):
        history += [
            HumanMessage(f"question {i} " + "word " * 40),
            AIMessage(f"answer {i} " + "word " * 40),
        ]
    history.append(HumanMessage("last question"))
    trimmed = trim_history(history, budget=400, model="gpt-4o-mini")
    assert trimmed[0].content == "be brief"
    assert trimmed[-1].content == "last question"
    assert trimmed[1].type == "human"  # never starts on an answer without its question
    assert len(trimmed) < len(history)
    assert "question 0" not in " ".join(str(m.content) for m in trimmed)


def test_trim_is_identity_when_it_fits() -> None:
    history = [HumanMessage("hi"), AIMessage("hello"), HumanMessage("how are you?")]
    assert trim_history(history, budget=4000, model="gpt-4o-mini") == history


def test_oversized_last_message_is_still_sent() -> None:
    history = [SystemMessage("sys"), HumanMessage("x " * 5000)]
    trimmed = trim_history(history, budget=100, model="gpt-4o-mini")
    assert [m.type for m in trimmed] == ["system", "human"]


def test_new_system_message_replaces_old_one() -> None:
    state = merge_messages([], [SystemMessage("v1"), HumanMessage("hi")])
    state = merge_messages(state, [AIMessage("hello")])
    state = merge_messages(state, [SystemMessage("v2"), HumanMessage("again")])
    assert [m.type for m in state] == ["system", "human", "ai", "human"]
    assert state[0].content == "v2"


def test_chat_input_accepts_both_message_styles() -> None:
    parsed = ChatInput.model_validate(
        {"messages": [{"role": "user", "content": "a"}, {"type": "ai", "content": "b"}]}
    )
    assert [m.type for m in parsed.messages] == ["human", "ai"]
