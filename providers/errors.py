"""Upstream failures → the service's errors, the same for the relay and for ChatOpenAI.

After retries are exhausted: upstream 429 → 429 ``upstream_rate_limited`` with
``Retry-After``; 5xx or an unreachable upstream → 502; a timeout → 504; an upstream 4xx
(a request the provider refused) → 400 with the provider's message. Every message names
the provider.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import openai

from core.errors import ApiError


class UpstreamStatusError(Exception):
    """A non-2xx answer from the upstream (raised inside the relay's retry loop)."""

    def __init__(self, status_code: int, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.retry_after = retry_after


RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the upstream asked us to wait (``retry-after-ms``, ``retry-after``)."""
    if (value := headers.get("retry-after-ms")) is not None:
        with contextlib.suppress(ValueError):
            return max(float(value) / 1000.0, 0.0)
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        with contextlib.suppress(TypeError, ValueError):
            return max((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds(), 0.0)
    return None


def upstream_message(body: bytes) -> str:
    """The provider's own error message, when its body has one."""
    import orjson

    try:
        data = orjson.loads(body)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    except orjson.JSONDecodeError:
        pass
    return body[:200].decode("utf-8", "replace") or "no details"


def map_status(provider: str, status: int, message: str, retry_after: float | None) -> ApiError:
    """The API error for an upstream status that retries did not cure."""
    if status == 429:
        wait = str(max(1, round(retry_after))) if retry_after is not None else "1"
        return ApiError(
            429,
            "upstream_rate_limited",
            f"{provider} is rate limiting this service: {message}",
            headers={"Retry-After": wait},
        )
    if status >= 500 or status in (408, 409):
        return ApiError(502, "upstream_error", f"{provider} failed with {status}: {message}")
    if status in (401, 403):
        return ApiError(
            502, "upstream_auth_failed", f"{provider} refused the service's credentials: {message}"
        )
    return ApiError(400, "upstream_bad_request", f"{provider} rejected the request: {message}")


def map_transport(provider: str, exc: Exception) -> ApiError:
    """The API error for a network failure that retries did not cure."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException | openai.APITimeoutError):
        return ApiError(504, "upstream_timeout", f"{provider} did not answer in time")
    return ApiError(502, "upstream_unavailable", f"{provider} could not be reached: {exc}")


def map_openai_error(provider: str, exc: openai.OpenAIError) -> ApiError:
    """Translate the openai SDK's exceptions (raised through ChatOpenAI)."""
    if isinstance(exc, openai.APIStatusError):
        return map_status(
            provider,
            exc.status_code,
            upstream_message(exc.response.content) if exc.response is not None else str(exc),
            parse_retry_after(exc.response.headers) if exc.response is not None else None,
        )
    return map_transport(provider, exc)


@contextlib.contextmanager
def upstream_errors(provider: str) -> Iterator[None]:
    """Turn openai SDK failures inside the block into :class:`ApiError`."""
    try:
        yield
    except openai.OpenAIError as exc:
        raise map_openai_error(provider, exc) from exc
