"""Request and response bodies of the REST API (separate from the ORM models)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictInt, StrictStr, field_validator

from core.patterns import THREAD_ID_PATTERN
from services.gateway_types import ChatMessage, ChatRequest, EmbeddingRequest, TemplateRef

# Body keys that are not generation parameters for the provider.
_NOT_PARAMS = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "cache",
    "thread_id",
    "metadata",
    "template",
}


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``."""

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The OpenAI Chat Completions body, plus ``thread_id`` and ``metadata``.

    Other OpenAI parameters (``top_p``, ``seed``, ``response_format``...) are passed to
    the provider unchanged.
    """

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, description="Model name; the default when omitted.")
    messages: list[ChatMessage] = Field(
        default_factory=list,
        description="The conversation; with thread_id, only the new turn. Optional with a "
        "template (its messages come first).",
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1, description="Only 1 is supported.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    tools: list[dict[str, Any]] | None = Field(
        default=None, description="Function tools (stateless path only), sent as they are."
    )
    tool_choice: Any = Field(
        default=None, description="`none`, `auto`, `required`, or a named function in `tools`."
    )
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = Field(
        default=None, description="Legacy function calling (use `tools`)."
    )
    function_call: Any = None
    response_format: dict[str, Any] | None = Field(
        default=None,
        description="`text`, `json_object`, or `json_schema` (an object schema, `strict`).",
    )
    cache: bool | None = Field(
        default=None,
        description="Use the response cache (default: when temperature is 0); false bypasses.",
    )
    thread_id: str | None = Field(
        default=None,
        pattern=THREAD_ID_PATTERN,
        description="Chat with memory: the service keeps the conversation of this thread.",
    )
    metadata: dict[str, Any] | None = Field(
        default=None, description="Kept with the thread (and, later, the usage event)."
    )
    template: TemplateRef | None = Field(
        default=None,
        description="A stored prompt template: its rendered messages come first, then "
        "`messages` (optional with a template); its model and parameters apply where the "
        "request sets none.",
    )

    def to_chat_request(self) -> ChatRequest:
        """The services' request: the provider's parameters apart from the gateway's keys."""
        return ChatRequest(
            messages=self.messages,
            model=self.model,
            params=self.model_dump(exclude_unset=True, exclude_none=True, exclude=_NOT_PARAMS),
            include_usage=bool(self.stream_options and self.stream_options.include_usage),
            cache=self.cache,
            thread_id=self.thread_id,
            metadata=self.metadata,
            template=self.template,
        )


class ModelCard(BaseModel):
    """One entry of ``GET /api/models`` (OpenAI's model object, with what it is for)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    capabilities: list[Literal["chat", "tools", "structured_output", "embeddings"]] = Field(
        default_factory=list,
        description="What the model is for: chat (/api/chat/completions), tools and "
        "structured_output there, embeddings (/api/embeddings).",
    )
    dimensions: int | None = Field(
        default=None, description="The vector size of an embedding model (its default)."
    )


class ModelList(BaseModel):
    """``GET /api/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ThreadPublic(BaseModel):
    """A chat thread as the API shows it."""

    id: str
    title: str | None
    model: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ThreadsPublic(BaseModel):
    """A page of threads."""

    data: list[ThreadPublic]
    count: int


class ThreadMessage(BaseModel):
    """A message of a thread, in OpenAI's shape.

    An assistant message that calls tools adds ``tool_calls`` (its content is null without
    text); a tool result adds ``tool_call_id``.
    """

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[Any] | None


class ThreadDetail(ThreadPublic):
    """A thread with its messages: the chat turns, and the knowledge-query turns apart."""

    messages: list[ThreadMessage] = Field(
        description="The chat turns (POST /api/chat/completions or /stream with this thread)."
    )
    knowledge_messages: list[ThreadMessage] = Field(
        default_factory=list,
        description="The knowledge-base turns (POST /api/knowledge/query with this thread): "
        "each question and its grounded answer.",
    )


class Health(BaseModel):
    """``/healthz`` and ``/readyz``."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class UsageNumbers(BaseModel):
    """Aggregated usage."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    audio_seconds: float = Field(description="Seconds of audio transcribed.")
    tts_characters: int = Field(description="Characters of text spoken.")
    errors: int
    cache_hits: int


class UsageGroup(UsageNumbers):
    """Usage of one model, user, day or route."""

    key: str


class SpeechPriceTable(BaseModel):
    """What speech costs: per minute of audio transcribed, per 1M characters spoken."""

    transcription_usd_per_minute: dict[str, float]
    synthesis_usd_per_million_characters: dict[str, float]


class UsageReport(BaseModel):
    """``GET /api/usage``."""

    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime
    totals: UsageNumbers
    groups: list[UsageGroup]
    speech_prices: SpeechPriceTable = Field(
        description="The speech prices in force (AHC_SPEECH_PRICES over the shipped ones)."
    )


class BatchRequest(BaseModel):
    """``POST /api/chat/batch``: chat completion bodies, validated one by one."""

    requests: list[Any] = Field(
        min_length=1, description="Chat completion request bodies (no streaming)."
    )


class BatchError(BaseModel):
    """Why one item failed (the status it would have had on its own)."""

    status: int
    code: str
    message: str


class BatchResult(BaseModel):
    """One item's outcome."""

    index: int
    response: dict[str, Any] | None = None
    error: BatchError | None = None


class BatchResponse(BaseModel):
    """Results in the order of the requests."""

    results: list[BatchResult]


class LimitsUpdate(BaseModel):
    """``PUT /api/limits``: every limit, ``null`` (or absent) meaning unlimited."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(default=None, ge=0, le=10**9)
    tokens_per_minute: int | None = Field(default=None, ge=0, le=10**12)
    tokens_per_day: int | None = Field(default=None, ge=0, le=10**12)
    tokens_per_month: int | None = Field(default=None, ge=0, le=10**12)
    cost_usd_per_month: Decimal | None = Field(default=None, ge=0, le=10**9, decimal_places=6)
    audio_seconds_per_month: int | None = Field(
        default=None, ge=0, le=10**10, description="Seconds of audio transcribed."
    )
    tts_characters_per_month: int | None = Field(
        default=None, ge=0, le=10**12, description="Characters of text spoken."
    )
    user_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="Set a per-user limit."
    )


class LimitsView(BaseModel):
    """One set of limits (``user_id`` null: the organization's)."""

    user_id: str | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    tokens_per_day: int | None
    tokens_per_month: int | None
    cost_usd_per_month: float | None
    audio_seconds_per_month: int | None
    tts_characters_per_month: int | None
    updated_at: datetime


class LimitsPublic(BaseModel):
    """``GET /api/limits``."""

    data: list[LimitsView]


class ProviderKeyIn(BaseModel):
    """``PUT /api/provider-keys/{provider}``."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr = Field(description="The provider API key (never returned or logged).")

    @field_validator("api_key")
    @classmethod
    def _plausible(cls, value: SecretStr) -> SecretStr:
        key = value.get_secret_value()
        if len(key) < 8 or len(key) > 1024 or any(c.isspace() for c in key):
            raise ValueError("api_key must be 8-1024 characters without spaces")
        return value


class ProviderKeyPublic(BaseModel):
    """A stored key, masked."""

    provider: str
    api_key: str = Field(description="Masked: '...' and the last four characters.")
    last4: str
    updated_at: datetime


class ProviderKeysPublic(BaseModel):
    """``GET /api/provider-keys``."""

    data: list[ProviderKeyPublic]


class EmbeddingsCreate(BaseModel):
    """``POST /api/embeddings``: OpenAI's Embeddings body."""

    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]] = Field(
        description="A text, a list of texts (up to 2048), or token ids (cl100k_base)."
    )
    model: str | None = Field(
        default=None,
        description="`local`, `local-e5use`, `local-e5`, `local-use`; OpenAI's embedding "
        "models with a key. Default: the service's embedding model.",
    )
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="`base64`: little-endian float32, as OpenAI sends it."
    )
    dimensions: int | None = Field(
        default=None, description="Shorter vectors (text-embedding-3 models only)."
    )
    user: str | None = Field(default=None, description="Accepted for compatibility.")

    def to_request(self) -> EmbeddingRequest:
        """The services' request."""
        return EmbeddingRequest(
            input=self.input, model=self.model, dimensions=self.dimensions, user=self.user
        )
