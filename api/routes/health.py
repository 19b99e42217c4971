"""Probes for the load balancer: ``/healthz`` (alive) and ``/readyz`` (dependencies up)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import ServicesDep
from api.schemas import Health
from limits.counters import RedisCounters

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)

_PROBE_TIMEOUT = 5.0


@router.get("/healthz", response_model=Health, operation_id="health-live")
async def healthz() -> Health:
    """The process is alive and serving."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    operation_id="health-ready",
    responses={503: {"model": Health, "description": "A dependency is unreachable"}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    """The database and the vector store answer."""
    checks: dict[str, str] = {}

    async def database() -> None:
        async with services.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    probes: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("database", database),
        ("vector_store", services.chroma.heartbeat),
    ]
    counters = services.limits.counters
    if isinstance(counters, RedisCounters):
        probes.append(("redis", counters.ping))
    for name, probe in probes:
        try:
            await asyncio.wait_for(probe(), _PROBE_TIMEOUT)
            checks[name] = "ok"
        except TimeoutError:
            if name == "vector_store" and not services.chroma.ready:
                # Still importing chromadb / opening the store: the build goes on, and a
                # later probe finds it ready (a fresh, cold process can take seconds).
                checks[name] = "starting"
            else:
                logger.warning("readiness check %s timed out", name)
                checks[name] = "unavailable: TimeoutError"
        except Exception as exc:  # a probe reports, it never raises
            logger.warning("readiness check %s failed: %s", name, exc)
            checks[name] = f"unavailable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
