"""Observability settings: logs, Prometheus metrics and OpenTelemetry traces."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from core.config.fields import OptionalSecret


class ObservabilitySettings(BaseModel):
    """Log level and format, the /metrics token and multiprocess dir, the OTLP endpoint."""

    log_level: str = "INFO"
    json_logs: bool = Field(default=True, description="One JSON object per log line.")
    metrics_token: OptionalSecret = Field(
        default=None,
        description="Bearer token of `GET /metrics` (Prometheus); unset: the route answers 404.",
    )
    otel_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL (e.g. http://otel-collector:4318): traces of "
        "requests and model calls go to <url>/v1/traces. Unset: no OpenTelemetry.",
    )
    otel_service_name: str = Field(
        default="ai-helper-core", description="`service.name` of the traces."
    )
    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="prometheus-client's multiprocess directory (several uvicorn workers): "
        "every worker writes there and `/metrics` answers for all. It must be in the process "
        "environment (prometheus-client reads it too), empty at start.",
    )
