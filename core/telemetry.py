"""OpenTelemetry traces (OTLP over HTTP), on when ``AHC_OTEL_ENDPOINT`` is set, beside LangSmith.

LangSmith shows what a model was asked and answered; an operator's tracing backend (Jaeger,
Tempo, Honeycomb...) shows where a request's time went. This sends the second: one server
span per HTTP request or websocket (FastAPI's instrumentation) and, inside it, one span per
model call with the GenAI semantic conventions' model and token counts and the org, user and
route, made where every call is accounted (``accounting.Accountant.record``).

Redaction by construction: no span carries a prompt, an answer, a document's text or a
header (none are captured), and the query string is cut from every recorded URL (the
websocket takes its token as ``?token=``).

The provider is this app's own, never the process-global one, so several apps in one process
(tests) do not share exporters; its exporter starts in the lifespan and is flushed at its end.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from core.config import Settings

URL_ATTRIBUTES = ("http.url", "http.target", "url.full", "url.query")
"""Span attributes that may hold a query string."""

NOT_TRACED = "healthz,metrics"
"""Probes and scrapes: frequent, and nothing to learn from."""


def _without_query(value: str) -> str:
    """``/path?token=x`` → ``/path`` (also for full URLs)."""
    parts = urlsplit(value)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def redact_request(span: Span, _scope: dict[str, Any]) -> None:
    """Cut the query string from the server span's URL attributes (tokens travel there)."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for name in URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str):
            span.set_attribute(name, "" if name == "url.query" else _without_query(value))


class Telemetry:
    """This app's tracer provider (or none), its exporter's lifetime and its tracer."""

    def __init__(self, settings: Settings) -> None:
        self._endpoint = settings.otel_endpoint
        self.provider: TracerProvider | None = None
        if self._endpoint is not None:
            resource = Resource.create({"service.name": settings.otel_service_name})
            self.provider = TracerProvider(resource=resource)

    @property
    def tracer(self) -> Tracer | None:
        """The tracer model-call spans are made with; None when tracing is off."""
        return None if self.provider is None else self.provider.get_tracer("ai-helper-core")

    def instrument(self, app: FastAPI) -> None:
        """Add the server-span middleware (a no-op when tracing is off)."""
        if self.provider is None:
            return
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            excluded_urls=NOT_TRACED,
            server_request_hook=redact_request,
            exclude_spans=[
                "receive",
                "send",
            ],  # a span per streamed chunk would cost more than the chunk
        )

    def start(self) -> None:
        """Start exporting (the lifespan's start: a background thread batches spans)."""
        if self.provider is not None and self._endpoint is not None:
            exporter = OTLPSpanExporter(endpoint=f"{self._endpoint.rstrip('/')}/v1/traces")
            self.provider.add_span_processor(BatchSpanProcessor(exporter))

    def shutdown(self) -> None:
        """Flush what is batched and stop (the lifespan's end)."""
        if self.provider is not None:
            self.provider.shutdown()


def record_model_call(
    tracer: Tracer,
    *,
    route: str,
    model: str,
    provider: str,
    org_id: str,
    user_id: str,
    prompt_tokens: int,
    completion_tokens: int,
    latency_ms: int,
    cached: bool,
    status: str,
    error_code: str | None,
    start_ns: int,
    end_ns: int,
) -> None:
    """One finished model call as a client span under the current (request) span."""
    span = tracer.start_span(
        f"{route} {model}",
        kind=SpanKind.CLIENT,
        start_time=start_ns,
        attributes={
            "gen_ai.system": provider,
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": prompt_tokens,
            "gen_ai.usage.output_tokens": completion_tokens,
            "ahc.org_id": org_id,
            "ahc.user_id": user_id,
            "ahc.route": route,
            "ahc.latency_ms": latency_ms,
            "ahc.cached": cached,
        },
    )
    if status != "ok":
        span.set_attribute("error.type", error_code or status)
        span.set_status(Status(StatusCode.ERROR, error_code or status))
    span.end(end_time=end_ns)
