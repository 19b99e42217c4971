"""Upstream failure mapping and Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from providers.errors import map_status, map_transport, parse_retry_after


def test_retry_after_forms() -> None:
    assert parse_retry_after(httpx.Headers({"retry-after": "3"})) == 3.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (parse_retry_after(httpx.Headers({"retry-after": when})) or 0) <= 30
    assert parse_retry_after(httpx.Headers({})) is None
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (429, 429, "upstream_rate_limited"),
        (500, 502, "upstream_error"),
        (503, 502, "upstream_error"),
        (401, 502, "upstream_auth_failed"),
        (400, 400, "upstream_bad_request"),
    ],
)
def test_status_mapping(status: int, expected: int, code: str) -> None:
    error = map_status("openai", status, "boom", 2.4)
    assert (error.status_code, error.code) == (expected, code)
    assert "openai" in error.message
    if status == 429:
        assert error.headers["Retry-After"] == "2"


def test_transport_mapping() -> None:
    assert map_transport("local", httpx.ReadTimeout("slow")).status_code == 504
    assert map_transport("local", httpx.ConnectError("down")).status_code == 502
