"""Accounting settings: usage events, their prices and how they are written."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AccountingSettings(BaseModel):
    """Usage recording, prices and the usage writer's batching."""

    accounting_enabled: bool = Field(
        default=True,
        description="Record usage events and enforce limits. Off only to measure their cost.",
    )
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="USD per 1M (input, output) tokens, added to / overriding the shipped "
        'OpenAI prices, e.g. {"my-model": [1.0, 2.0]}.',
    )
    usage_flush_interval_seconds: float = Field(default=0.25, gt=0)
    usage_batch_size: int = Field(default=500, ge=1)
    usage_max_buffer: int = Field(
        default=50_000, ge=100, description="Events kept in memory before spooling to disk."
    )
