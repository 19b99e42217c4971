"""Responses items ⇄ Chat Completions messages: the whole mapping, both ways.

The gateway speaks Chat Completions upstream (one relay, one cache, one set of limits), so
a Responses request becomes a chat request here and the chat answer becomes output items:

- input items → messages: ``message`` items keep their role (their ``input_text`` parts
  become text parts, ``input_image`` an ``image_url``); consecutive ``function_call`` items
  join the assistant message before them as its ``tool_calls``; a ``function_call_output``
  becomes a ``tool`` message (its ``call_id`` must answer an earlier call); ``reasoning``
  items are dropped (the chat upstream has nothing to take them).
- ``tools`` (flat ``{type, name, parameters, strict}``) and a named ``tool_choice`` get
  Chat Completions' nested ``function`` shape; ``text.format`` becomes ``response_format``.
- the answer's text becomes one ``message`` item (``output_text`` content), each tool call a
  ``function_call`` item whose ``call_id`` is the provider's call id.

Every refusal is a 400 naming the field the way the client wrote it (``input[2].call_id``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from core.errors import ApiError

_MESSAGE_ROLES = ("user", "system", "developer", "assistant")
_TEXT_PARTS = ("input_text", "output_text", "text")
_SKIPPED_ITEMS = ("reasoning",)
_CHOICES = ("none", "auto", "required")


def invalid(param: str, message: str) -> ApiError:
    """A 400 naming ``param`` (as ``details.param`` and at the start of the message)."""
    return ApiError(400, "invalid_request", f"{param}: {message}", details={"param": param})


def unsupported(param: str, message: str) -> ApiError:
    """A 400 for a feature of the Responses API this gateway does not offer."""
    return ApiError(400, "unsupported_parameter", f"{param}: {message}", details={"param": param})


def new_id(prefix: str) -> str:
    """A fresh id in OpenAI's style (``resp_``, ``msg_``, ``fc_``)."""
    return f"{prefix}_{uuid.uuid4().hex}"


# --- input -----------------------------------------------------------------------------------


def input_items(value: str | list[Any] | None) -> list[dict[str, Any]]:
    """The request's ``input`` as a list of items (a string is one user message)."""
    if value is None:
        raise invalid("input", "is required: a text or a list of items")
    if isinstance(value, str):
        if not value.strip():
            raise invalid("input", "must not be empty")
        return [{"type": "message", "role": "user", "content": value}]
    if not value:
        raise invalid("input", "must contain at least one item")
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise invalid(f"input[{index}]", "must be an object")
    return [dict(item) for item in value]


class MessageBuilder:
    """Turns input items into chat messages, remembering which tool calls were made.

    Used once per request: first the stored conversation of ``previous_response_id``
    (``where="previous_response_id"``), then the request's own ``input``.
    """

    def __init__(self, instructions: str | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self._calls: set[str] = set()
        if instructions:
            self.messages.append({"role": "system", "content": instructions})

    def add(self, items: list[dict[str, Any]], where: str = "input") -> None:
        """Append ``items`` (checked; errors name ``where[index]``)."""
        for index, item in enumerate(items):
            param = f"{where}[{index}]"
            kind = item.get("type", "message")
            if kind == "message":
                self._message(item, param)
            elif kind == "function_call":
                self._function_call(item, param)
            elif kind == "function_call_output":
                self._function_output(item, param)
            elif kind not in _SKIPPED_ITEMS:
                known = "message, function_call, function_call_output"
                raise invalid(f"{param}.type", f"unknown item type '{kind}' (known: {known})")

    def _message(self, item: Mapping[str, Any], param: str) -> None:
        role = item.get("role")
        if role not in _MESSAGE_ROLES:
            raise invalid(f"{param}.role", f"must be one of {', '.join(_MESSAGE_ROLES)}")
        content = item.get("content")
        if isinstance(content, str):
            self.messages.append({"role": role, "content": content})
            return
        if not isinstance(content, list):
            raise invalid(f"{param}.content", "must be a string or a list of content parts")
        parts = [_part(part, f"{param}.content[{i}]", role) for i, part in enumerate(content)]
        if role == "user" and any(p["type"] != "text" for p in parts):
            self.messages.append({"role": role, "content": parts})
        else:  # system, developer and assistant messages take text only: joined
            self.messages.append({"role": role, "content": "".join(p["text"] for p in parts)})

    def _function_call(self, item: Mapping[str, Any], param: str) -> None:
        call_id, name = item.get("call_id"), item.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise invalid(f"{param}.call_id", "a function_call needs its call_id")
        if not isinstance(name, str) or not name:
            raise invalid(f"{param}.name", "a function_call needs the function's name")
        arguments = item.get("arguments", "")
        if not isinstance(arguments, str):
            raise invalid(f"{param}.arguments", "must be a JSON string")
        call = {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
            if not last.get("content"):
                last["content"] = None
        else:
            self.messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        self._calls.add(call_id)

    def _function_output(self, item: Mapping[str, Any], param: str) -> None:
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise invalid(f"{param}.call_id", "a function_call_output needs the call_id it answers")
        if call_id not in self._calls:
            raise invalid(f"{param}.call_id", f"'{call_id}' answers no earlier function_call")
        output = item.get("output")
        if isinstance(output, list):
            texts = [_part(part, f"{param}.output[{i}]", "tool") for i, part in enumerate(output)]
            output = "".join(p["text"] for p in texts)
        if not isinstance(output, str):
            raise invalid(f"{param}.output", "must be a string or a list of text parts")
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": output})


def _part(part: Any, param: str, role: str) -> dict[str, Any]:
    """One content part in Chat Completions' shape (text, or an image for a user)."""
    if not isinstance(part, Mapping):
        raise invalid(param, "must be an object")
    kind = part.get("type")
    if kind in _TEXT_PARTS or kind == "refusal":
        text = part.get("refusal" if kind == "refusal" else "text")
        if not isinstance(text, str):
            raise invalid(f"{param}.text", "must be a string")
        return {"type": "text", "text": text}
    if kind == "input_image" and role == "user":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise unsupported(f"{param}.image_url", "give the image as a URL or a data URL")
        image = {"url": url}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise unsupported(f"{param}.type", f"content part '{kind}' is not supported here")


def stored_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Checked input items as kept (``GET .../input_items``): each with an id, content as parts.

    A string ``content`` becomes one ``input_text`` part (``output_text`` for an assistant);
    the model sees the same text either way.
    """
    prefixes = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}
    kept = []
    for item in items:
        kind = item.get("type", "message")
        if kind not in prefixes:
            continue  # reasoning items: not sent, not kept
        item = {**item, "type": kind}
        item.setdefault("id", new_id(prefixes[kind]))
        if kind == "message" and isinstance(item.get("content"), str):
            part = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": part, "text": item["content"]}]
        kept.append(item)
    return kept


# --- tools and formats ------------------------------------------------------------------------


def chat_tools(tools: list[Any] | None) -> list[dict[str, Any]] | None:
    """Function tools in Chat Completions' shape (only function tools are offered)."""
    if tools is None:
        return None
    converted = []
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        if not isinstance(tool, Mapping):
            raise invalid(param, "must be an object")
        if tool.get("type") != "function":
            raise unsupported(
                f"{param}.type", f"'{tool.get('type')}': only function tools are supported"
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name.strip():
            raise invalid(f"{param}.name", "a tool needs a name")
        function: dict[str, Any] = {"name": name}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        converted.append({"type": "function", "function": function})
    return converted


def chat_tool_choice(choice: Any, tools: list[dict[str, Any]] | None) -> Any:
    """``tool_choice`` in Chat Completions' shape; a named function must be among ``tools``."""
    if choice is None or (isinstance(choice, str) and choice in _CHOICES):
        return choice
    if not isinstance(choice, Mapping) or choice.get("type") != "function":
        raise invalid("tool_choice", f"must be one of {', '.join(_CHOICES)} or a named function")
    name = choice.get("name")
    declared = [t["function"]["name"] for t in tools or []]
    if not isinstance(name, str) or not name:
        raise invalid("tool_choice.name", "a named choice needs the function's name")
    if name not in declared:
        listed = ", ".join(declared) or "none"
        raise invalid("tool_choice.name", f"'{name}' is not in tools (declared: {listed})")
    return {"type": "function", "function": {"name": name}}


def response_format(text: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``text.format`` as Chat Completions' ``response_format`` (None for plain text)."""
    form = (text or {}).get("format")
    if form is None:
        return None
    if not isinstance(form, Mapping):
        raise invalid("text.format", "must be an object")
    kind = form.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise invalid("text.format.type", "must be text, json_object or json_schema")
    name = form.get("name")
    if not isinstance(name, str) or not name:
        raise invalid("text.format.name", "a json_schema format needs a name")
    schema = form.get("schema")
    if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        raise invalid("text.format.schema", "must be a JSON schema of an object")
    spec: dict[str, Any] = {"name": name, "schema": dict(schema)}
    for key in ("description", "strict"):
        if form.get(key) is not None:
            spec[key] = form[key]
    return {"type": "json_schema", "json_schema": spec}


# --- output -----------------------------------------------------------------------------------


def message_item(text: str, *, item_id: str, status: str = "completed") -> dict[str, Any]:
    """An assistant ``message`` output item with one ``output_text`` part."""
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [text_part(text)],
    }


def text_part(text: str) -> dict[str, Any]:
    """An ``output_text`` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(
    *, item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    """A ``function_call`` output item."""
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def output_items(message: Mapping[str, Any], *, status: str = "completed") -> list[dict[str, Any]]:
    """A chat answer's assistant message as output items: its text, then its calls."""
    items: list[dict[str, Any]] = []
    content = message.get("content") or message.get("refusal")
    if isinstance(content, str) and content:
        items.append(message_item(content, item_id=new_id("msg"), status=status))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        items.append(
            call_item(
                item_id=new_id("fc"),
                call_id=str(call.get("id") or new_id("call")),
                name=str(function.get("name") or ""),
                arguments=str(function.get("arguments") or ""),
            )
        )
    if not items:
        items.append(message_item("", item_id=new_id("msg"), status=status))
    return items


def usage(chat_usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """Chat ``usage`` in the Responses shape (input/output tokens and their details)."""
    chat_usage = chat_usage or {}
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    completion = int(chat_usage.get("completion_tokens") or 0)
    cached = (chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": int(chat_usage.get("total_tokens") or prompt + completion),
    }


def ending(finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    """The response's status and ``incomplete_details`` for a chat ``finish_reason``."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None
