"""Checks of tool calling and structured output before a request goes upstream.

The relay forwards ``tools``, ``tool_choice``, ``parallel_tool_calls``, the legacy
``functions``/``function_call`` and ``response_format`` unchanged; what the provider would
refuse with an opaque message (or a model would answer garbled) is refused here first, with
a 400 whose message and ``param`` name the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from core.errors import ApiError
from services.gateway_types import ChatMessage, ChatRequest

TOOL_PARAMS = ("tools", "tool_choice", "functions", "function_call", "parallel_tool_calls")
"""The request keys of tool calling (their presence makes a request a tool request)."""

_CHOICES = ("none", "auto", "required")


def uses_tools(request: ChatRequest) -> bool:
    """Whether the request offers tools or functions, or carries a tool exchange."""
    params = request.params
    if any(params.get(name) is not None for name in TOOL_PARAMS):
        return True
    return any(_tool_calls(m) or m.role in ("tool", "function") for m in request.messages)


def check_tools(request: ChatRequest, *, exchange: bool = True) -> None:
    """Refuse malformed tools, choices, tool exchanges and response formats (400).

    ``exchange=False`` leaves the tool messages to :func:`check_exchange` (a thread turn:
    its calls may have been made in earlier turns, which only the thread knows).
    """
    params = request.params
    tools = _names(params.get("tools"), "tools", nested=True)
    functions = _names(params.get("functions"), "functions", nested=False)
    _check_choice(params.get("tool_choice"), tools, "tool_choice", nested=True)
    _check_choice(params.get("function_call"), functions, "function_call", nested=False)
    if exchange:
        check_exchange(request.messages)
    _check_response_format(params.get("response_format"))


def check_template_offer(tools: Any, response_format: Any) -> None:
    """A template version's ``tools`` and ``response_format``, checked as a chat request's.

    Without messages there is no ``tool_choice`` or exchange to check: the request that
    names the template brings those, and is checked with the template's tools in place.
    """
    _names(tools, "tools", nested=True)
    _check_response_format(response_format)
    for param, value in (("tools", tools), ("response_format", response_format)):
        try:  # stored as JSON (PostgreSQL refuses NaN), sent with orjson (64-bit integers)
            json.dumps(value, allow_nan=False)
            orjson.dumps(value)
        except (ValueError, TypeError) as exc:
            raise _invalid(
                param, "must be JSON without NaN, Infinity or integers beyond 64 bits"
            ) from exc


def _invalid(param: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request", f"{param}: {message}", details={"param": param})


def _names(value: Any, param: str, *, nested: bool) -> list[str]:
    """The declared tool (or function) names; every function needs one."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid(param, "must be a list")
    names = []
    for index, tool in enumerate(value):
        where = f"{param}[{index}]"
        if not isinstance(tool, Mapping):
            raise _invalid(where, "must be an object")
        if nested and tool.get("type", "function") != "function":
            continue  # other tool kinds go to the provider as they are
        function = tool.get("function") if nested else tool
        if nested:
            where += ".function"
        if not isinstance(function, Mapping):
            raise _invalid(where, "must be an object with a name")
        name = function.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _invalid(f"{where}.name", "a tool needs a name")
        names.append(name)
    return names


def _check_choice(choice: Any, names: list[str], param: str, *, nested: bool) -> None:
    """A named choice must name a declared tool; the keywords pass."""
    if choice is None or (isinstance(choice, str) and choice in _CHOICES):
        return
    if not isinstance(choice, Mapping):
        raise _invalid(param, f"must be one of {', '.join(_CHOICES)} or a named function")
    if nested and choice.get("type", "function") != "function":
        return  # e.g. {"type": "allowed_tools", ...}: the provider's to judge
    function = choice.get("function") if nested else choice
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(name, str) or not name:
        raise _invalid(param, "a named choice needs function.name" if nested else "needs a name")
    if name not in names:
        declared = ", ".join(names) or "none"
        source = "tools" if nested else "functions"
        raise _invalid(param, f"names '{name}', which is not in {source} (declared: {declared})")


def _tool_calls(message: ChatMessage) -> Sequence[Any]:
    calls = (message.model_extra or {}).get("tool_calls")
    return calls if isinstance(calls, list) else []


def tool_call_ids(message: ChatMessage) -> list[str]:
    """The ids of the calls an assistant message makes."""
    return [
        call["id"]
        for call in _tool_calls(message)
        if isinstance(call, Mapping) and isinstance(call.get("id"), str)
    ]


def check_exchange(messages: Sequence[ChatMessage], earlier: Iterable[str] = ()) -> None:
    """Each ``tool`` message answers a call an earlier assistant message made.

    ``earlier``: the ids of the calls made before these messages (a thread's earlier turns).
    """
    asked: set[str] = set(earlier)
    for index, message in enumerate(messages):
        if message.role == "assistant":
            for call in _tool_calls(message):
                if isinstance(call, Mapping) and isinstance(call.get("id"), str):
                    asked.add(call["id"])
        elif message.role == "tool":
            call_id = (message.model_extra or {}).get("tool_call_id")
            param = f"messages[{index}].tool_call_id"
            if not isinstance(call_id, str) or not call_id:
                raise _invalid(param, "a tool message needs the id of the call it answers")
            if call_id not in asked:
                raise _invalid(param, f"'{call_id}' answers no earlier assistant tool call")


def _check_response_format(value: Any) -> None:
    """``text``, ``json_object``, or ``json_schema`` whose schema is a JSON object schema."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise _invalid("response_format", "must be an object")
    if value.get("type") != "json_schema":
        return
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping):
        raise _invalid("response_format.json_schema", "must be an object")
    schema = spec.get("schema")
    if schema is None:
        return
    if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        raise _invalid("response_format.json_schema.schema", "must be a JSON schema of an object")
