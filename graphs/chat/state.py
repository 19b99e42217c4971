"""State of the chat graph: the conversation, with at most one system message, first."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from langchain_core.messages import AnyMessage, BaseMessage, SystemMessage, convert_to_messages
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field, field_validator
from typing_extensions import TypedDict


def merge_messages(left: list[AnyMessage], right: list[Any] | Any) -> list[AnyMessage]:
    """``add_messages``, except that a new system message replaces the old one.

    A client may resend its system prompt with every turn of a thread; keeping one makes
    it an instruction that can be changed, not a growing pile.
    """
    incoming = convert_to_messages(right if isinstance(right, list) else [right])
    systems = [m for m in incoming if isinstance(m, SystemMessage)]
    if not systems:
        return add_messages(left, incoming)  # type: ignore[arg-type,return-value]
    history = [m for m in left if not isinstance(m, SystemMessage)]
    rest = [m for m in incoming if not isinstance(m, SystemMessage)]
    return add_messages([systems[-1], *history], rest)  # type: ignore[arg-type,return-value]


class ChatState(TypedDict):
    """The checkpointed conversation."""

    messages: Annotated[list[AnyMessage], merge_messages]
    """Every message of the thread, system message first when there is one."""


class ChatInput(BaseModel):
    """The graph's public input: new messages, as LangChain messages or OpenAI-style dicts.

    Converting here (not in a node) means a malformed message is a 422 from LangServe's
    input validation, never a 500 from deep inside the graph.
    """

    messages: list[AnyMessage] = Field(
        description="New messages of this turn, e.g. [{'role': 'user', 'content': 'Hi'}]."
    )

    @field_validator("messages", mode="before")
    @classmethod
    def _to_messages(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError("messages must be a list")
        if not value:
            raise ValueError("messages must not be empty")
        try:
            messages = [
                m if isinstance(m, BaseMessage) else convert_to_messages([_with_content(m)])[0]
                for m in value
            ]
            for message in messages:
                # The checkpointer must be able to store it (e.g. no integers beyond 64 bits).
                orjson.dumps(message.model_dump())
        except (ValueError, TypeError, NotImplementedError, KeyError) as exc:
            raise ValueError(f"invalid message: {exc}") from exc
        return messages


def _with_content(message: Any) -> Any:
    """An OpenAI message dict with ``content``: an assistant turn of only tool calls omits it."""
    if isinstance(message, dict) and "role" in message and "content" not in message:
        return {**message, "content": None}
    return message
