"""Prometheus metrics of the process: the collectors, the cheap hooks the layers call, the text.

The collectors are built on first use (no import-time side effects) in the default registry,
so prometheus-client's multiprocess mode works as documented: with ``PROMETHEUS_MULTIPROC_DIR``
in the environment, every worker writes its values there and a scrape of any worker answers
for all of them (:func:`render`).

Label cardinality is bounded on purpose: routes are templates (``/api/chat/threads/{thread_id}``,
never the path), unmatched paths share ``route="unmatched"``, methods outside the usual set
are ``OTHER``; models, providers, error codes and job tasks are the service's own short
lists. Only ``org`` grows, with the customers: ``ahc_tokens_total`` and
``ahc_cost_usd_total`` hold one series per org × model (× kind for tokens).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from decimal import Decimal
    from pathlib import Path

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Collectors:
    """Every metric the service exports (one instance per process: :func:`collectors`)."""

    http_duration: Histogram
    upstream_duration: Histogram
    upstream_errors: Counter
    tokens: Counter
    cost: Counter
    cache_hits: Counter
    limit_rejections: Counter
    jobs_queued: Gauge
    jobs_running: Gauge
    jobs_oldest_age: Gauge
    jobs_finished: Counter


@functools.cache
def collectors() -> Collectors:
    """The process's collectors, registered in the default registry on first use."""
    return Collectors(
        http_duration=Histogram(
            "ahc_http_request_duration_seconds",
            "HTTP requests by route template, method and status (its _count counts requests).",
            ("route", "method", "status"),
            buckets=_LATENCY_BUCKETS,
        ),
        upstream_duration=Histogram(
            "ahc_upstream_duration_seconds",
            "Model calls by provider and outcome (one per usage event, cache hits excluded).",
            ("provider", "status"),
            buckets=_LATENCY_BUCKETS,
        ),
        upstream_errors=Counter(
            "ahc_upstream_errors_total",
            "Failed model calls by provider and error code.",
            ("provider", "code"),
        ),
        tokens=Counter(
            "ahc_tokens_total",
            "Tokens used by organization, model and kind (prompt or completion).",
            ("org", "model", "kind"),
        ),
        cost=Counter(
            "ahc_cost_usd_total", "Cost in USD by organization and model.", ("org", "model")
        ),
        cache_hits=Counter(
            "ahc_cache_hits_total", "Answers served from the response cache.", ("model",)
        ),
        limit_rejections=Counter(
            "ahc_limit_rejections_total",
            "Requests refused with 429 by a usage limit.",
            ("limit", "scope"),
        ),
        jobs_queued=Gauge(
            "ahc_jobs_queued",
            "Background jobs waiting for a worker.",
            ("task",),
            multiprocess_mode="livesum",
        ),
        jobs_running=Gauge(
            "ahc_jobs_running",
            "Background jobs being run.",
            ("task",),
            multiprocess_mode="livesum",
        ),
        jobs_oldest_age=Gauge(
            "ahc_jobs_oldest_queued_age_seconds",
            "Age of the oldest waiting job (0 when none waits), set at each scrape.",
            multiprocess_mode="livemax",
        ),
        jobs_finished=Counter(
            "ahc_jobs_finished_total",
            "Finished background jobs by task and state (ingestion throughput: "
            'rate(ahc_jobs_finished_total{task="knowledge.ingest",state="done"})).',
            ("task", "state"),
        ),
    )


# --- hooks the layers call (cheap, never raise into a request) ---------------------------


def observe_usage(
    *,
    org_id: str,
    model: str,
    provider: str,
    prompt_tokens: int,
    completion_tokens: int,
    cost_usd: Decimal,
    latency_ms: int,
    cached: bool,
    status: str,
    error_code: str | None,
) -> None:
    """Count one usage event: every model call of every entry point passes here once."""
    if cached:
        collectors().cache_hits.labels(model).inc()
    else:
        _upstream(provider, status).observe(latency_ms / 1000)
        if status != "ok":
            collectors().upstream_errors.labels(provider, error_code or "unknown").inc()
    prompt, completion, cost = _usage(org_id, model)
    if prompt_tokens:
        prompt.inc(prompt_tokens)
    if completion_tokens:
        completion.inc(completion_tokens)
    if cost_usd:
        cost.inc(float(cost_usd))


# Label children cached (``labels()`` validates and locks: ~7 µs an event without these,
# ~3 µs with); as many as there are series, which the module docstring bounds.
@functools.cache
def _upstream(provider: str, status: str) -> Histogram:
    return collectors().upstream_duration.labels(provider, status)


@functools.cache
def _usage(org_id: str, model: str) -> tuple[Counter, Counter, Counter]:
    c = collectors()
    return (
        c.tokens.labels(org_id, model, "prompt"),
        c.tokens.labels(org_id, model, "completion"),
        c.cost.labels(org_id, model),
    )


def count_limit_rejection(limit: str, scope: str) -> None:
    """A usage limit answered 429."""
    collectors().limit_rejections.labels(limit, scope).inc()


_scrape_hooks: list[Callable[[], float]] = []


def watch_oldest_job(oldest_age: Callable[[], float]) -> Callable[[], None]:
    """Report a job queue's oldest waiting age at each scrape; returns the way to stop."""
    _scrape_hooks.append(oldest_age)
    return lambda: _scrape_hooks.remove(oldest_age) if oldest_age in _scrape_hooks else None


# --- the exposition ----------------------------------------------------------------------


def render(multiprocess_dir: Path | None = None) -> bytes:
    """The text exposition; with a multiprocess directory, of every process writing there."""
    c = collectors()
    c.jobs_oldest_age.set(max((hook() for hook in list(_scrape_hooks)), default=0.0))
    if multiprocess_dir is not None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(multiprocess_dir))
        return generate_latest(registry)
    return generate_latest()


class MetricsMiddleware:
    """Times every HTTP request by route template, method and status (pure ASGI).

    The route is read from the scope after the app ran (the router records the matched
    route there); label children are cached by (route, method, status), so a request costs
    two clock reads, one dict lookup and one observation.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[int, str, int], Callable[[float], None]] = {}
        self._templates: dict[int, str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve and time the request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # raised before any response: the server error handler answers 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")  # routes live as long as the app: their ids are stable
            key = (id(route), scope["method"], status)
            observe = self._children.get(key)
            if observe is None:
                observe = self._child(key, route, scope)
            observe(elapsed)

    def _child(
        self, key: tuple[int, str, int], route: object, scope: Scope
    ) -> Callable[[float], None]:
        """The observation of a new (route, method, status): the cold path."""
        if self._templates is None:
            self._templates = _route_templates(scope.get("app"))
        template = self._templates.get(key[0]) or getattr(route, "path", None) or "unmatched"
        method = key[1] if key[1] in _METHODS else "OTHER"
        observe = collectors().http_duration.labels(template, method, str(key[2])).observe
        if method != "OTHER":  # a client's invented methods must not grow the cache
            self._children[key] = observe
        return observe


def _route_templates(app: object) -> dict[int, str]:
    """Full path templates by route id: an included router's routes know only their own part.

    (FastAPI records the router's route in the scope, ``/chat/completions``; its template
    under the app is ``/api/chat/completions``.)
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # an older FastAPI: routes carry their full path themselves
        return {}
    routes = getattr(app, "routes", None) or []
    templates: dict[int, str] = {}
    for context in iter_route_contexts(routes):
        if context.path_format:
            templates.setdefault(id(context.original_route), context.path_format)
    return templates
