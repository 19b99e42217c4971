"""The gateway's own Responses request: what ``ResponsesService`` takes, whatever the wire.

``api`` maps ``POST /api/responses`` onto :class:`ResponseRequest` (types checked there);
``services.responses.items`` checks the contents (items, tools, formats) with 400s that
name the field, since those are the mistakes a client makes while building the body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ResponseRequest:
    """One ``POST /api/responses`` body, as the service sees it.

    ``input`` is a string or the list of input items, as sent; ``tools``, ``tool_choice``
    and ``text`` are in the Responses shape (translated by ``services.responses.items``).
    """

    input: str | list[Any] | None
    model: str | None = None
    instructions: str | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    text: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    store: bool = True
    previous_response_id: str | None = None
    user: str | None = None
    cache: bool | None = None
