"""OpenAI wire format for answers that do not come straight from an upstream (memory path)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage


def completion_id() -> str:
    """A fresh ``chatcmpl-`` id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage_dict(message: BaseMessage) -> dict[str, int] | None:
    """OpenAI ``usage`` from a LangChain message's ``usage_metadata``."""
    meta = getattr(message, "usage_metadata", None)
    if not meta:
        return None
    return {
        "prompt_tokens": meta["input_tokens"],
        "completion_tokens": meta["output_tokens"],
        "total_tokens": meta["total_tokens"],
    }


def finish_reason(message: BaseMessage) -> str:
    """The provider's finish reason, ``stop`` when unknown."""
    return str(message.response_metadata.get("finish_reason") or "stop")


def completion_body(*, cid: str, model: str, message: BaseMessage) -> dict[str, Any]:
    """A ``chat.completion`` object for one assistant message."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": to_openai_message(message),
                "finish_reason": finish_reason(message),
            }
        ],
        "usage": usage_dict(message)
        or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def chunk_event(
    *,
    cid: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    usage: dict[str, int] | None = None,
) -> bytes:
    """One SSE event carrying a ``chat.completion.chunk``."""
    chunk: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": []
        if usage is not None
        else [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


DONE_EVENT = b"data: [DONE]\n\n"


def to_openai_message(message: BaseMessage) -> dict[str, Any]:
    """A LangChain message in OpenAI's shape.

    ``{"role", "content"}``; an assistant message that calls tools carries ``tool_calls``
    (content null when it has no text), a tool result its ``tool_call_id``.
    """
    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
    body: dict[str, Any] = {"role": roles.get(message.type, message.type)}
    if isinstance(message, AIMessage):
        body["content"] = message.text
        calls = openai_tool_calls(message)
        legacy = message.additional_kwargs.get("function_call")
        if calls or legacy:
            body["content"] = message.text or None
        if calls:
            body["tool_calls"] = calls
        if isinstance(legacy, dict):
            body["function_call"] = legacy
        return body
    body["content"] = message.content
    if isinstance(message, ToolMessage):
        body["tool_call_id"] = message.tool_call_id
    return body


def openai_tool_calls(message: AIMessage) -> list[dict[str, Any]]:
    """The message's tool calls as OpenAI sends them: the provider's own argument text.

    A provider's answer keeps its raw calls in ``additional_kwargs``; a call a client sent
    (converted to LangChain's parsed ``tool_calls``) has its arguments written back as JSON.
    """
    raw = message.additional_kwargs.get("tool_calls")
    if isinstance(raw, list) and raw and all(isinstance(c, dict) for c in raw):
        return [
            {
                "id": c.get("id"),
                "type": c.get("type") or "function",
                "function": {
                    "name": (c.get("function") or {}).get("name"),
                    "arguments": (c.get("function") or {}).get("arguments") or "",
                },
            }
            for c in raw
        ]
    calls = [
        {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": orjson.dumps(call["args"]).decode()},
        }
        for call in message.tool_calls
    ]
    calls += [
        {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"] or "", "arguments": call["args"] or ""},
        }
        for call in message.invalid_tool_calls
    ]
    return calls


def chunk_call_deltas(chunk: AIMessageChunk) -> dict[str, Any] | None:
    """A streamed chunk's tool-call (or legacy function-call) fragments as an OpenAI delta.

    Each fragment keeps its index; the id, type and name come with a call's first fragment
    only, as the provider sent them.
    """
    deltas = []
    for part in chunk.tool_call_chunks:
        delta: dict[str, Any] = {"index": part.get("index") or 0}
        if part.get("id"):
            delta["id"] = part["id"]
            delta["type"] = "function"
        function: dict[str, str] = {}
        if part.get("name"):
            function["name"] = part["name"] or ""
        if part.get("args") is not None:
            function["arguments"] = part["args"] or ""
        if function:
            delta["function"] = function
        deltas.append(delta)
    if deltas:
        return {"tool_calls": deltas}
    legacy = chunk.additional_kwargs.get("function_call")
    if isinstance(legacy, dict) and legacy:
        return {"function_call": legacy}
    return None


def text_completion(
    *,
    model: str,
    text: str,
    finish: str,
    usage: dict[str, Any] | None,
    tool_calls: list[dict[str, Any]] | None = None,
    function_call: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` object for a text answer (and its tool or function calls)."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls or function_call:
        message["content"] = text or None
        if tool_calls:
            message["tool_calls"] = tool_calls
        if function_call:
            message["function_call"] = function_call
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


async def replay_stream(completion: bytes, *, include_usage: bool) -> AsyncIterator[bytes]:
    """A stored ``chat.completion`` replayed as SSE chunks (cache hits on streams)."""
    body = orjson.loads(completion)
    choice = body["choices"][0]
    cid, model, created = body.get("id") or completion_id(), body["model"], int(time.time())
    yield chunk_event(
        cid=cid, model=model, created=created, delta={"role": "assistant", "content": ""}
    )
    message = choice["message"]
    text = message.get("content") or ""
    for start in range(0, len(text), 64):
        yield chunk_event(
            cid=cid, model=model, created=created, delta={"content": text[start : start + 64]}
        )
    for delta in call_deltas(message):
        yield chunk_event(cid=cid, model=model, created=created, delta=delta)
    yield chunk_event(
        cid=cid, model=model, created=created, finish=choice.get("finish_reason") or "stop"
    )
    if include_usage and body.get("usage"):
        yield chunk_event(cid=cid, model=model, created=created, usage=body["usage"])
    yield DONE_EVENT


def call_deltas(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A stored message's tool calls (or function call) as stream deltas, as a provider sends.

    Each call opens with its index, id, type and name, then its arguments in pieces.
    """
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        head = {"index": index, "id": call.get("id"), "type": call.get("type", "function")}
        deltas.append(
            {"tool_calls": [{**head, "function": {"name": function.get("name"), "arguments": ""}}]}
        )
        arguments = function.get("arguments") or ""
        deltas += [
            {"tool_calls": [{"index": index, "function": {"arguments": arguments[i : i + 64]}}]}
            for i in range(0, len(arguments), 64)
        ]
    if legacy := message.get("function_call"):
        arguments = legacy.get("arguments") or ""
        deltas.append({"function_call": {"name": legacy.get("name"), "arguments": ""}})
        deltas += [
            {"function_call": {"arguments": arguments[i : i + 64]}}
            for i in range(0, len(arguments), 64)
        ]
    return deltas
