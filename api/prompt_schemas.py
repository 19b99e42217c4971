"""Request and response bodies of the prompt template routes (``/api/prompt-templates``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.patterns import LABEL_PATTERN, TEMPLATE_NAME_PATTERN

TAG_PATTERN = r"^[^\x00-\x1f]{1,64}$"
MAX_MESSAGES = 100
MAX_MESSAGE_CHARS = 100_000
MAX_TOOLS = 128
"""OpenAI's own cap on the tools of one request."""

Tag = Annotated[str, Field(pattern=TAG_PATTERN)]
VariableName = Annotated[str, Field(min_length=1, max_length=128)]


class TemplateMessage(BaseModel):
    """A message of a template, or a placeholder for a list of messages (history)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "placeholder"]
    content: str = Field(
        max_length=MAX_MESSAGE_CHARS,
        description="The text with {variables} (f-string) or {{variables}} (mustache); "
        "for a placeholder, the variable in braces: '{history}'.",
    )
    optional: bool | None = Field(
        default=None, description="Placeholders only: may the variable be omitted (default true)."
    )


class TemplateParams(BaseModel):
    """Default generation parameters of a template (unknown names are refused)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    stop: list[str] | None = Field(default=None, max_length=4)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)


class TemplateCreate(BaseModel):
    """``POST /api/prompt-templates``: a new template, or a new version of an existing name."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TEMPLATE_NAME_PATTERN)
    description: str | None = Field(
        default=None, max_length=2000, description="Omitted: keep the template's."
    )
    tags: list[Tag] | None = Field(
        default=None, max_length=20, description="Omitted: keep the template's."
    )
    messages: list[TemplateMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    template_format: Literal["f-string", "mustache"] = "f-string"
    input_variables: list[VariableName] | None = Field(
        default=None,
        max_length=200,
        description="Declared variables; must match the messages. Omitted: taken from them.",
    )
    model: str | None = Field(default=None, min_length=1, max_length=128)
    params: TemplateParams = Field(default_factory=TemplateParams)
    tools: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=MAX_TOOLS,
        description="OpenAI's chat tools, sent with a chat call naming the template unless "
        "the request offers its own (tools or functions). Empty or omitted: none.",
    )
    response_format: dict[str, Any] | None = Field(
        default=None,
        description="OpenAI's response_format (text, json_object, json_schema), sent unless "
        "the request sets its own.",
    )


class TemplatePublic(BaseModel):
    """One version of a template, with the template's name, labels and scope."""

    name: str
    scope: Literal["org", "system"]
    description: str
    tags: list[str]
    version: int
    latest_version: int
    labels: dict[str, int]
    template_format: Literal["f-string", "mustache"]
    messages: list[dict[str, Any]]
    input_variables: list[str]
    optional_variables: list[str]
    model: str | None
    params: dict[str, Any]
    tools: list[dict[str, Any]] | None
    response_format: dict[str, Any] | None
    content_hash: str
    created_by: str
    created_at: datetime
    updated_at: datetime


class TemplatesPublic(BaseModel):
    """A page of templates (their latest versions)."""

    data: list[TemplatePublic]
    count: int


class LabelUpdate(BaseModel):
    """``PUT .../labels/{label}``: the version the label points at from now on."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1)


class LabelPublic(BaseModel):
    """A label after it moved, with every label of the template."""

    name: str
    label: str
    version: int
    labels: dict[str, int]


class RenderRequest(BaseModel):
    """``POST .../render``: variables, and which version (default: production, else latest)."""

    model_config = ConfigDict(extra="forbid")

    variables: dict[str, Any] = Field(default_factory=dict)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    label: str | None = Field(default=None, pattern=LABEL_PATTERN)


class RenderedMessage(BaseModel):
    """A rendered message, in OpenAI's shape."""

    role: str
    content: str


class RenderPublic(BaseModel):
    """The rendered messages and the version that produced them."""

    name: str
    version: int
    scope: Literal["org", "system"]
    messages: list[RenderedMessage]
    model: str | None
    params: dict[str, Any]
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None


# --- evaluations (``POST .../{name}/evaluate``, ``GET .../{name}/evaluations``) -----------

EVALUATION_ID_PATTERN = r"^[A-Za-z0-9\-]{1,64}$"
EvaluationStatus = Literal["queued", "running", "done", "failed", "cancelled"]


class EvaluatorConfig(BaseModel):
    """An evaluator with options; a bare name (``"exact"``) takes the defaults.

    ``exact``/``contains``: ``ignore_case`` (default true). ``similarity``: ``model``, the
    embedding model (default ``local``). ``length``: ``unit`` (``characters``, ``words``,
    ``tokens``). ``judge``: ``model`` (default: the service's default model) and ``rubric``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=32,
        description="exact, contains, similarity, length or judge.",
    )
    model: str | None = Field(default=None, min_length=1, max_length=128)
    rubric: str | None = Field(default=None, min_length=1, max_length=4000)
    ignore_case: bool | None = None
    unit: Literal["characters", "words", "tokens"] | None = None


class EvaluationItem(BaseModel):
    """One dataset row: the template's variables, and the answer evaluators compare with."""

    model_config = ConfigDict(extra="forbid")

    variables: dict[str, Any] = Field(default_factory=dict)
    expected: str | None = Field(
        default=None,
        max_length=MAX_MESSAGE_CHARS,
        description="Needed by exact, contains and similarity; shown to the judge when given.",
    )


class EvaluationCreate(BaseModel):
    """``POST .../{name}/evaluate``: versions × dataset, scored by evaluators."""

    model_config = ConfigDict(extra="forbid")

    versions: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] | None = Field(
        default=None, min_length=1, max_length=10, description="Omitted: the latest version."
    )
    dataset: list[EvaluationItem] = Field(min_length=1, max_length=200)
    evaluators: list[Annotated[str, Field(min_length=1, max_length=32)] | EvaluatorConfig] = Field(
        default_factory=list, max_length=10
    )
    model: str | None = Field(
        default=None, min_length=1, max_length=128, description="Overrides each version's model."
    )
    params: TemplateParams = Field(
        default_factory=TemplateParams, description="Override each version's params."
    )
    concurrency: int = Field(default=4, ge=1, le=16, description="Model calls at once.")


class EvaluationError(BaseModel):
    """Why one call (or one evaluator) failed."""

    code: str
    message: str


class EvaluationItemResult(BaseModel):
    """One dataset item run with one version."""

    index: int
    output: str | None = Field(description="Cut to 2000 characters (output_truncated).")
    output_truncated: bool
    latency_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    scores: dict[str, float | None]
    judge_reason: str | None = None
    evaluator_errors: dict[str, EvaluationError] = Field(default_factory=dict)
    error: EvaluationError | None = None


class LatencyStats(BaseModel):
    """Latency of the version's successful calls, in milliseconds."""

    mean: float | None
    p50: float | None
    p95: float | None


class TokenTotals(BaseModel):
    """Tokens of the version's calls."""

    prompt: int
    completion: int
    total: int


class EvaluatorUsage(BaseModel):
    """What the evaluators' model calls (the judge) used for this version."""

    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class VersionResult(BaseModel):
    """One version's numbers over the dataset."""

    version: int
    model: str
    params: dict[str, Any]
    n: int = Field(description="Items run.")
    errors: int = Field(description="Items whose call failed.")
    latency_ms: LatencyStats
    tokens: TokenTotals
    cost_usd: float
    scores: dict[str, float | None] = Field(description="Mean score per evaluator.")
    evaluator_errors: dict[str, int]
    evaluator_usage: EvaluatorUsage
    items: list[EvaluationItemResult] | None = Field(
        default=None, description="Per item (omitted in lists)."
    )


class EvaluationResults(BaseModel):
    """Per-version results and, per measure, the best version(s)."""

    versions: list[VersionResult]
    best: dict[str, list[int]] = Field(
        description="Highest mean score per evaluator (length aside), lowest latency_ms "
        "and cost_usd; ties list every version."
    )


class EvaluationProgress(BaseModel):
    """(item, version) pairs finished out of all."""

    done: int
    total: int


class EvaluationPublic(BaseModel):
    """An evaluation: its request, status, progress and (once finished) results."""

    id: str
    name: str
    versions: list[int]
    status: EvaluationStatus
    error: str | None
    progress: EvaluationProgress
    evaluators: list[dict[str, Any]]
    model: str | None
    params: dict[str, Any]
    concurrency: int
    dataset_size: int
    dataset: list[EvaluationItem] | None = Field(default=None, description="Omitted in lists.")
    results: EvaluationResults | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class EvaluationsPublic(BaseModel):
    """A page of a template's evaluations, newest first (without per-item results)."""

    data: list[EvaluationPublic]
    count: int
