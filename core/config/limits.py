"""Limit settings: org limits and the Redis that shares their counters between instances."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LimitSettings(BaseModel):
    """Redis (state shared by instances), the reply cap of limited orgs, the org cache."""

    redis_url: str | None = Field(
        default=None,
        description="Redis for state shared by instances (limit counters, response cache, "
        "thread turn locks); in-process if unset.",
    )
    redis_prefix: str = Field(default="ahc:", description="Prefix of every Redis key.")
    limits_default_max_tokens: int = Field(
        default=4096,
        ge=1,
        description="Reply cap reserved (and sent upstream) when a limited org's request "
        "sets no max_tokens, so token and cost caps hold exactly.",
    )
    org_cache_seconds: float = Field(
        default=5.0, ge=0, description="How long an instance caches an org's limits and keys."
    )
