"""Process settings: the deployment environment and graceful shutdown."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ProcessSettings(BaseModel):
    """Environment name and the SIGTERM grace period."""

    shutdown_grace_seconds: int = Field(
        default=30,
        ge=0,
        description="On SIGTERM the API stops accepting connections and lets in-flight "
        "requests and streams finish this long (then cancels them); usage events are then "
        "flushed and jobs handed back to the queue. Keep it below the orchestrator's kill "
        "timeout (docker's stop_grace_period, Kubernetes' terminationGracePeriodSeconds).",
    )
    environment: Literal["development", "production", "test"] = "development"
