"""Schemathesis over the REST API: no input, however odd, gets a 500.

Runs every operation of ``/openapi.json`` under ``/api`` and the runnable ``invoke``
endpoints with generated bodies, authenticated, against the live service.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.service import RunningService

FUZZED_PREFIXES = (
    "/api/",
    "/runnables/chat/invoke",
    "/runnables/completion/invoke",
    "/runnables/voice/invoke",
)


def test_no_server_errors(service: RunningService) -> None:
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    headers = service.headers()
    failures: list[str] = []
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if result.ok().path.startswith(FUZZED_PREFIXES)
    ]
    assert len(operations) >= 6

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=service.url, headers=headers, timeout=30)
            if response.status_code >= 500:
                status, text = response.status_code, response.text[:200]
                failures.append(f"{case.method} {case.formatted_path} -> {status}: {text}")
            elif response.status_code >= 400:
                assert set(response.json()["error"]) >= {"code", "message"}

        check()
    if failures:
        pytest.fail("server errors:\n" + "\n".join(failures[:10]))
