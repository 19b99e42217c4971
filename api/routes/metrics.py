"""``GET /metrics``: the Prometheus text, closed by default.

Served only when ``AHC_METRICS_TOKEN`` is set (404 otherwise, as if the route did not
exist), and then only to ``Authorization: Bearer <that token>`` (401 without it). The
token is compared in constant time; it is not a user JWT, so a scraper needs no org.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from core.errors import ApiError
from core.metrics import CONTENT_TYPE, render

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The process's metrics (every worker's in multiprocess mode)."""
    settings = request.app.state.settings
    secret = settings.metrics_token
    if secret is None:
        raise ApiError(404, "not_found", "Not Found")
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    expected = secret.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise ApiError(
            401,
            "invalid_metrics_token",
            "send 'Authorization: Bearer <AHC_METRICS_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Response(render(settings.prometheus_multiproc_dir), media_type=CONTENT_TYPE)
