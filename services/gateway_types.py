"""The gateway's own chat request: what the chat services take, whatever the wire format.

``api/`` maps its bodies onto :class:`ChatRequest` (Chat Completions today; the Responses
API and tool calling later), so the services never import an API schema. The message and
template-reference models live here because both the wire schema and the services use
them; ``api.schemas`` re-exports them under the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from core.patterns import LABEL_PATTERN, TEMPLATE_NAME_PATTERN

MAX_TEMPLATE_VARIABLES = 200


class TemplateRef(BaseModel):
    """A stored prompt template used by name: which version, and its variables.

    Without ``version`` or ``label``: the version labelled ``production``, else the latest.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TEMPLATE_NAME_PATTERN, description="The template's name.")
    version: int | None = Field(default=None, ge=1, le=2**31 - 1, description="A version.")
    label: str | None = Field(
        default=None, pattern=LABEL_PATTERN, description="A label's version (not with version)."
    )
    variables: dict[str, Any] = Field(
        default_factory=dict,
        max_length=MAX_TEMPLATE_VARIABLES,
        description="The template's variables (a variable it does not use is refused).",
    )

    @model_validator(mode="after")
    def _one_selector(self) -> TemplateRef:
        if self.version is not None and self.label is not None:
            raise ValueError("give a template version or a label, not both")
        return self


class ChatMessage(BaseModel):
    """One OpenAI chat message (extra keys such as ``tool_call_id`` pass through)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


_MESSAGES: TypeAdapter[list[ChatMessage]] = TypeAdapter(list[ChatMessage])


def wire_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The messages as the provider takes them (unset and null keys left out; one call)."""
    return _MESSAGES.dump_python(messages, exclude_unset=True, exclude_none=True)


def parse_messages(messages: list[dict[str, Any]]) -> list[ChatMessage]:
    """Validate plain message dicts (a template's rendered messages)."""
    return _MESSAGES.validate_python(messages)


@dataclass(slots=True)
class ChatRequest:
    """One chat request as the services see it.

    ``params`` holds the generation parameters to send to the provider as they are
    (``temperature``, ``max_tokens``, ``stop``, ``top_p``, ``seed``, ``tools``...), never
    ``model`` or ``messages`` and never the gateway's own keys, which are fields here.
    """

    messages: list[ChatMessage]
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    include_usage: bool = False
    cache: bool | None = None
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None
    template: TemplateRef | None = None

    @property
    def temperature(self) -> float | None:
        """The sampling temperature, if set."""
        value = self.params.get("temperature")
        return float(value) if value is not None else None

    @property
    def reply_limit(self) -> int | None:
        """The completion token cap, whichever of the two OpenAI names the client used."""
        return self.params.get("max_completion_tokens") or self.params.get("max_tokens")

    @property
    def stop_list(self) -> list[str] | None:
        """``stop`` as a list."""
        stop = self.params.get("stop")
        if stop is None:
            return None
        return [stop] if isinstance(stop, str) else list(stop)

    def given(self) -> dict[str, Any]:
        """The request's non-null model and parameters (what template defaults must not fill)."""
        return {k: v for k, v in {"model": self.model, **self.params}.items() if v is not None}

    def prompt_text(self) -> str:
        """The text a limit hold counts: the messages, their tool calls, tools and formats."""
        parts = [str(m.content or "") for m in self.messages]
        parts += [
            _json_text(calls)
            for m in self.messages
            if (calls := (m.model_extra or {}).get("tool_calls"))
        ]
        parts += [
            _json_text(self.params[name])
            for name in ("tools", "functions", "response_format")
            if self.params.get(name) is not None
        ]
        return " ".join(parts)


def _json_text(value: Any) -> str:
    """``value`` as JSON text (``str`` when orjson refuses it, e.g. a 65-bit integer)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


@dataclass(frozen=True, slots=True)
class KnowledgeQuestion:
    """A question for the RAG use case (``services.knowledge_query``), whatever the wire format.

    ``api`` maps ``POST /api/knowledge/query`` onto it (validated there).
    """

    question: str
    collection: str = "default"
    k: int = 4
    filter: dict[str, Any] | None = None
    mode: Literal["vector", "keyword", "hybrid"] = "hybrid"
    min_similarity: float | None = None
    rerank: bool | str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    thread_id: str | None = None
    template: TemplateRef | None = None


EmbeddingInput = str | list[str] | list[int] | list[list[int]]
"""OpenAI's embedding ``input``: a text, texts, token ids of one text, or of several."""


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """An embeddings request (``services.embeddings``), whatever the wire format.

    ``api`` maps ``POST /api/embeddings`` onto it; the service checks the input (400s).
    """

    input: EmbeddingInput
    model: str | None = None
    dimensions: int | None = None
    user: str | None = None
