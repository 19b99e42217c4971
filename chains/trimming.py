"""The memory policy: what part of a long thread goes to the model.

The whole thread stays in the checkpointer (``GET /api/chat/threads/{id}`` shows it);
only the prompt is trimmed. Policy: keep the system message, then the most recent
messages that fit in ``context window − reply reserve`` tokens, starting on a user
message so the model never sees an answer without its question. Tokens are counted
offline with tiktoken (an estimate for non-OpenAI models).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from langchain_core.messages import BaseMessage, trim_messages

from core.tokenizer import count_message_tokens


def prompt_budget(context_window: int, max_tokens: int | None, reserve: int) -> int:
    """Tokens left for the prompt once the reply is provided for."""
    reply = max_tokens if max_tokens is not None else reserve
    return max(context_window - reply, 64)


def trim_history(messages: Sequence[BaseMessage], *, budget: int, model: str) -> list[BaseMessage]:
    """The most recent messages within ``budget`` tokens, system message kept."""
    trimmed = trim_messages(
        list(messages),
        max_tokens=budget,
        token_counter=partial(count_message_tokens, model=model),
        strategy="last",
        include_system=True,
        start_on="human",
        allow_partial=False,
    )
    if not any(m.type == "human" for m in trimmed) and messages:
        # The last user message alone is over budget: send it anyway and let the
        # provider answer with its own context-length error.
        return [*[m for m in messages if m.type == "system"][:1], messages[-1]]
    return trimmed
