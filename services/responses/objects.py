"""The Responses API's ``response`` object, built the same way for JSON answers and streams."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from services.responses.items import new_id
from services.responses.request import ResponseRequest


@dataclass(slots=True)
class ResponseShell:
    """What a response echoes of its request, plus its id and creation time.

    :meth:`body` fills in the parts known only later (status, output, usage).
    """

    request: ResponseRequest
    model: str
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))

    def body(
        self,
        *,
        status: str,
        output: list[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
        incomplete: dict[str, str] | None = None,
        error: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The ``response`` object at this point of its life."""
        request = self.request
        finished = status in ("completed", "incomplete", "failed")
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "completed_at": int(time.time()) if status == "completed" else None,
            "status": status,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "model": self.model,
            "output": output or [],
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": request.previous_response_id,
            "store": request.store,
            "temperature": request.temperature,
            "text": _text_config(request.text),
            "tool_choice": request.tool_choice if request.tool_choice is not None else "auto",
            "tools": [_tool(t) for t in request.tools or []],
            "top_p": request.top_p,
            "truncation": "disabled",
            "usage": usage if finished else None,
            "user": request.user,
            "metadata": dict(request.metadata),
        }


def _text_config(text: dict[str, Any] | None) -> dict[str, Any]:
    """``text`` as echoed: the format (``text`` by default)."""
    form = (text or {}).get("format") or {"type": "text"}
    return {"format": form}


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A function tool as echoed (``strict`` and ``parameters`` always present)."""
    return {
        "type": "function",
        "name": tool["name"],
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict"),
    }
