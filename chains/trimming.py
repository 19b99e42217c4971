"""The memory policy: what part of a long thread goes to the model.

The whole thread stays in the checkpointer (``GET /api/chat/threads/{id}`` shows it);
only the prompt is trimmed. Policy: keep the system message, then the most recent
messages that fit in ``context window − reply reserve`` tokens, starting on a user
message so the model never sees an answer without its question, nor a tool result
without the assistant message that called the tool (a tool exchange always follows its
user message, so a window starting on a user message holds whole exchanges). Tokens are
counted offline with tiktoken (an estimate for non-OpenAI models), tool calls included.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from langchain_core.messages import AIMessage, BaseMessage, trim_messages

from core.tokenizer import count_message_tokens, encoding_for


def prompt_budget(context_window: int, max_tokens: int | None, reserve: int) -> int:
    """Tokens left for the prompt once the reply is provided for."""
    reply = max_tokens if max_tokens is not None else reserve
    return max(context_window - reply, 64)


def trim_history(messages: Sequence[BaseMessage], *, budget: int, model: str) -> list[BaseMessage]:
    """The most recent messages within ``budget`` tokens, system message kept."""

    def count(batch: Sequence[BaseMessage]) -> int:
        return count_message_tokens(batch, model=model) + _call_tokens(batch, model)

    trimmed = trim_messages(
        list(messages),
        max_tokens=budget,
        token_counter=count,
        strategy="last",
        include_system=True,
        start_on="human",
        allow_partial=False,
    )
    if not any(m.type == "human" for m in trimmed) and messages:
        # The last user message (with the tool exchange after it) is over budget: send it
        # anyway and let the provider answer with its own context-length error. From the
        # last user message on, so that no tool result loses the call it answers.
        last = max((i for i, m in enumerate(messages) if m.type == "human"), default=None)
        tail = list(messages[last:]) if last is not None else _whole_exchanges(messages)
        return [*[m for m in messages if m.type == "system"][:1], *tail]
    return trimmed


def _whole_exchanges(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The messages after the system one, without leading tool results (no user message)."""
    rest = [m for m in messages if m.type != "system"]
    start = next((i for i, m in enumerate(rest) if m.type != "tool"), len(rest))
    return rest[start:] or rest[-1:]


def _call_tokens(messages: Sequence[BaseMessage], model: str) -> int:
    """Tokens of the assistant messages' tool calls (their names and arguments)."""
    calls = [
        {"name": call["name"], "args": call["args"]}
        for m in messages
        if isinstance(m, AIMessage)
        for call in m.tool_calls
    ]
    if not calls:
        return 0
    return len(encoding_for(model).encode(orjson.dumps(calls).decode(), disallowed_special=()))
