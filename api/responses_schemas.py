"""The body of ``POST /api/responses`` (OpenAI's Responses API), mapped onto the service's type.

Types are checked here (422 when wrong); the contents of ``input``, ``tools``,
``tool_choice`` and ``text.format`` are checked by ``services.responses.items`` (400
naming the field). Fields that clients such as LangChain's ``ChatOpenAI`` send and that
change nothing here are accepted and ignored (:data:`IGNORED`); any other unknown field,
and the Responses features this gateway does not offer, are a 400.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.errors import ApiError
from services.responses.request import ResponseRequest

IGNORED = frozenset(
    {
        "include",  # extra output (reasoning.encrypted_content, logprobs...): none to add
        "reasoning",  # the upstream is Chat Completions; no reasoning items come back
        "stream_options",  # include_obfuscation: no obfuscation added
        "truncation",  # the conversation is sent whole ("disabled")
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "top_logprobs",
        "max_tool_calls",
        "context_management",
        "prompt_cache_options",
    }
)
"""Fields accepted and ignored (they ask for nothing this gateway could do differently)."""

UNSUPPORTED = ("conversation", "prompt", "background")
"""Responses features this gateway does not offer (a 400 when set)."""


class ResponseCreate(BaseModel):
    """``POST /api/responses``: OpenAI's Responses body (plus ``cache``)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, description="Model name; the default when omitted.")
    input: str | list[dict[str, Any]] | None = Field(
        default=None,
        description="A text, or a list of items: messages (`role`, `content`), `function_call` "
        "and `function_call_output`.",
    )
    instructions: str | None = Field(
        default=None,
        description="A system message placed first (not carried over by previous_response_id).",
    )
    tools: list[dict[str, Any]] | None = Field(
        default=None,
        description="Function tools: `{type: function, name, description, parameters, strict}`.",
    )
    tool_choice: str | dict[str, Any] | None = Field(
        default=None, description="`none`, `auto`, `required`, or `{type: function, name}`."
    )
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    text: dict[str, Any] | None = Field(
        default=None,
        description="`{format: {type: text | json_object | json_schema, name, schema, strict}}`.",
    )
    metadata: dict[str, str] | None = Field(
        default=None, max_length=16, description="Up to 16 string pairs, echoed and stored."
    )
    stream: bool = False
    store: bool = Field(
        default=True, description="Keep the response (GET, previous_response_id); false: not."
    )
    previous_response_id: str | None = Field(
        default=None,
        max_length=64,
        description="Continue from a stored response: the model sees its input and output.",
    )
    user: str | None = None
    cache: bool | None = Field(
        default=None,
        description="Use the response cache (default: when temperature is 0); false bypasses.",
    )

    def to_request(self) -> ResponseRequest:
        """The services' request (400 for a field this gateway does not take)."""
        self._refuse_unknown()
        return ResponseRequest(
            input=self.input,
            model=self.model,
            instructions=self.instructions,
            tools=self.tools,
            tool_choice=self.tool_choice,
            parallel_tool_calls=self.parallel_tool_calls,
            temperature=self.temperature,
            top_p=self.top_p,
            max_output_tokens=self.max_output_tokens,
            text=self.text,
            metadata=dict(self.metadata or {}),
            store=self.store,
            previous_response_id=self.previous_response_id,
            user=self.user,
            cache=self.cache,
        )

    def _refuse_unknown(self) -> None:
        for name, value in (self.model_extra or {}).items():
            if value is None or name in IGNORED:
                continue
            if name in UNSUPPORTED:
                if name == "background" and not value:
                    continue
                raise ApiError(
                    400,
                    "unsupported_parameter",
                    f"{name}: not supported by this gateway",
                    details={"param": name},
                )
            raise ApiError(
                400, "unsupported_parameter", f"{name}: unknown parameter", details={"param": name}
            )
