"""Request and response bodies of the prompt template routes (``/api/prompt-templates``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TEMPLATE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"
TAG_PATTERN = r"^[^\x00-\x1f]{1,64}$"
MAX_MESSAGES = 100
MAX_MESSAGE_CHARS = 100_000

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
