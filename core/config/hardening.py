"""Hardening settings: request body cap, CORS and the block of repeated bad credentials."""

from __future__ import annotations

from pydantic import BaseModel, Field


class HardeningSettings(BaseModel):
    """Body size cap, CORS origins, auth failure throttling."""

    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1,
        description="Largest request body that is not a multipart upload (413 above; uploads "
        "keep their own caps).",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins browsers may call the API from (JSON list, e.g. ["https://app.'
        'example.com"], or ["*"]); none by default (CORS closed).',
    )
    auth_failure_limit: int = Field(
        default=30,
        ge=1,
        description="Rejected credentials one client address may send per window; then 429.",
    )
    auth_failure_window_seconds: float = Field(
        default=60.0, gt=0, description="Window of auth_failure_limit (and the block's length)."
    )
