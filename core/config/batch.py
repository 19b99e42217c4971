"""Batch settings: the size and parallelism of one batch request."""

from __future__ import annotations

from pydantic import BaseModel, Field


class BatchSettings(BaseModel):
    """Items per batch request and how many run at once."""

    batch_max_items: int = Field(default=100, ge=1)
    batch_concurrency: int = Field(default=8, ge=1)
