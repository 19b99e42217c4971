"""Background job settings: the queue, retries and worker shutdown."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class JobSettings(BaseModel):
    """Where jobs wait (in process or procrastinate), retries, stalled and stopping workers."""

    job_queue: Literal["in_process", "procrastinate"] = Field(
        default="in_process",
        description="Where background jobs wait: in this process (the embedded default) or "
        "in PostgreSQL with procrastinate (scale-out; needs a PostgreSQL database_url).",
    )
    job_schema: str = Field(
        default="ahc_jobs", description="PostgreSQL schema of procrastinate's job tables."
    )
    job_run_in_api: bool = Field(
        default=True,
        description="With procrastinate: the API process also runs jobs (knowledge_workers "
        "at a time); false leaves them to `ai-helper-core worker` processes.",
    )
    job_max_attempts: int = Field(
        default=5, ge=1, description="Runs of a job that fails transiently (network, DB)."
    )
    job_retry_backoff_seconds: float = Field(
        default=2.0, gt=0, description="Wait before the first retry; doubles each time."
    )
    job_retry_backoff_max_seconds: float = Field(
        default=300.0, gt=0, description="Longest wait between two retries."
    )
    job_shutdown_seconds: float = Field(
        default=10.0,
        ge=0,
        description="On SIGTERM a worker lets running jobs finish this long, then hands "
        "them back to the queue (they run again, idempotently, elsewhere).",
    )
    job_stalled_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A worker without heartbeat this long is dead: its running jobs are "
        "queued again (and re-run idempotently) by the live workers.",
    )
