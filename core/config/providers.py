"""Provider settings: the service's OpenAI account and how upstream calls are retried."""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, Field

from core.config.fields import OptionalSecret


class ProviderSettings(BaseModel):
    """OpenAI key, URL and models, the default model, upstream timeouts and retries."""

    openai_api_key: OptionalSecret = Field(
        default=None, validation_alias=AliasChoices("AHC_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str = Field(
        default="https://api.openai.com/v1",
        validation_alias=AliasChoices("AHC_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
    )
    openai_organization: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AHC_OPENAI_ORGANIZATION", "OPENAI_ORG_ID"),
    )
    openai_models: list[str] = Field(
        default=["gpt-4o-mini", "gpt-4o", "gpt-4", "gpt-3.5-turbo"],
        description="Models served through OpenAI when a key is set; the first is the default.",
    )
    default_model: str | None = Field(
        default=None,
        description="Model used when a request names none: first OpenAI model with a key, "
        "else `local`.",
    )
    upstream_timeout_seconds: float = 60.0
    upstream_max_retries: int = Field(default=2, ge=0, le=10)
    upstream_backoff_seconds: float = Field(
        default=0.5, gt=0, description="First retry delay; doubles per attempt, with jitter."
    )
    upstream_backoff_max_seconds: float = Field(
        default=8.0, gt=0, description="Cap of one retry delay, Retry-After included."
    )
