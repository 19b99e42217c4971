"""One error shape for every failure: ``{"error": {"code", "message", "type"}}``.

The body is also what the OpenAI SDK expects (it reads ``error.message``), so clients of
the OpenAI-compatible routes see a readable exception. Handlers turn FastAPI/Starlette
exceptions and validation errors into that shape, so no route answers a bare 500 or
FastAPI's ``{"detail": ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    502: "upstream_error",
    503: "unavailable",
    504: "upstream_timeout",
}


class ApiError(Exception):
    """An error the API answers deliberately, with a stable machine-readable ``code``."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = dict(details or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of this error (``details`` join ``code`` and ``message``)."""
        body = error_body(self.code, self.message, self.status_code)
        body["error"].update(self.details)
        return body


def error_body(code: str, message: str, status_code: int) -> dict[str, Any]:
    """Build the error body; ``type`` mirrors OpenAI's error families."""
    kind = "invalid_request_error" if status_code < 500 else "api_error"
    if status_code == 429:
        kind = "rate_limit_error"
    elif status_code in (401, 403):
        kind = "authentication_error"
    return {"error": {"code": code, "message": message, "type": kind}}


def error_response(error: ApiError) -> JSONResponse:
    """Render an :class:`ApiError`."""
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for item in exc.errors()[:5]:
        loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _api_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if isinstance(detail, dict) and "code" in detail:
        code, message = str(detail["code"]), str(detail.get("message", ""))
    else:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = detail if isinstance(detail, str) else str(detail)
    return JSONResponse(
        error_body(code, message, exc.status_code),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _validation_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        error_body("invalid_request", _describe_validation(exc), 422), status_code=422
    )


async def _input_validation_handler(_: Request, exc: Exception) -> JSONResponse:
    """A runnable's own input validation (inside LangChain/LangGraph) is the client's error."""
    assert isinstance(exc, ValidationError)
    errors = exc.errors()
    if not errors:
        return JSONResponse(error_body("invalid_input", str(exc), 422), status_code=422)
    where = ".".join(str(p) for p in errors[0]["loc"])
    message = f"{where}: {errors[0]['msg']}" if where else errors[0]["msg"]
    return JSONResponse(error_body("invalid_input", message, 422), status_code=422)


async def _database_busy_handler(request: Request, exc: Exception) -> JSONResponse:
    """A busy or unreachable database is transient: 503 with Retry-After, not a bare 500.

    SQLite serializes writers (a large ingestion's commit can outlast the busy timeout);
    PostgreSQL may be restarting or the pool exhausted. The failed transaction rolled back,
    so the client may retry.
    """
    logger.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, exc, exc_info=exc
    )
    message = (
        "the database is busy or unreachable; retry in a moment"
        if isinstance(exc, OperationalError)
        else "no database connection was free in time; retry in a moment"
    )
    return JSONResponse(
        error_body("database_unavailable", message, 503),
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def _unhandled_error_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body("internal_error", "internal server error", 500), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""
    app.add_exception_handler(ApiError, _api_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(ValidationError, _input_validation_handler)
    app.add_exception_handler(OperationalError, _database_busy_handler)
    app.add_exception_handler(PoolTimeoutError, _database_busy_handler)
    app.add_exception_handler(Exception, _unhandled_error_handler)
