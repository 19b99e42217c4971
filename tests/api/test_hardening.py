"""Hardening over real HTTP: body cap, CORS, security headers, auth failure limits, fuzz finds."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import pytest

from tests.support.service import RunningService, ServiceFactory

BAD_TOKEN = {"Authorization": "Bearer not-a-jwt"}


# --- body size cap ------------------------------------------------------------------------


def test_declared_oversized_json_body_is_413_before_it_is_read(services: ServiceFactory) -> None:
    """The 413 comes back while the client has sent only the headers."""
    service = services.start(max_body_bytes=1000)
    url = urlparse(service.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
        )
        received = b""
        while chunk := sock.recv(65536):  # the service closes the connection after its 413
            received += chunk
    answer = received.decode()
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413")
    assert '"payload_too_large"' in body
    assert "1000 bytes" in body


def test_chunked_oversized_body_is_413(services: ServiceFactory) -> None:
    service = services.start(max_body_bytes=1000)

    def chunks() -> Iterator[bytes]:
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}]}'

    response = httpx.post(
        f"{service.api}/chat/completions",
        content=chunks(),  # no Content-Length: Transfer-Encoding chunked
        headers={**service.headers(), "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_chunked_oversized_langserve_body_is_413(services: ServiceFactory) -> None:
    service = services.start(max_body_bytes=1000)
    body = b'{"input": {"input": "' + b"y" * 5000 + b'"}}'
    response = httpx.post(
        f"{service.url}/runnables/completion/invoke",
        content=iter([body[:500], body[500:]]),
        headers={**service.headers(), "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_body_under_the_cap_and_uploads_pass(services: ServiceFactory) -> None:
    service = services.start(max_body_bytes=2000)
    response = httpx.post(
        f"{service.api}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers=service.headers(),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    # A multipart upload above the JSON cap is judged by the knowledge cap, not this one.
    upload = httpx.post(
        f"{service.api}/knowledge/documents",
        files={"files": ("big.txt", b"word " * 2000, "text/plain")},
        headers=service.headers(),
        timeout=60,
    )
    assert upload.status_code in (200, 201, 202), upload.text


# --- CORS and security headers ------------------------------------------------------------


def test_cors_closed_by_default(service: RunningService) -> None:
    preflight = httpx.options(
        f"{service.api}/chat/completions",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    response = httpx.get(f"{service.url}/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_open_to_configured_origins(services: ServiceFactory) -> None:
    service = services.start(cors_origins=["https://app.example"])
    preflight = httpx.options(
        f"{service.api}/chat/completions",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    other = httpx.options(
        f"{service.api}/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"


@pytest.mark.parametrize("path", ["/healthz", "/api/models", "/openapi.json", "/nowhere"])
def test_security_headers_on_every_response(service: RunningService, path: str) -> None:
    response = httpx.get(f"{service.url}{path}", headers=service.headers())
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"


def test_playground_may_be_framed_by_its_own_origin(service: RunningService) -> None:
    response = httpx.get(
        f"{service.url}/runnables/completion/playground/", headers=service.headers()
    )
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert response.headers["x-content-type-options"] == "nosniff"


# --- authentication failures --------------------------------------------------------------


def _hammer(service: RunningService, times: int) -> list[httpx.Response]:
    with httpx.Client(base_url=service.url, timeout=10) as client:
        return [client.get("/api/models", headers=BAD_TOKEN) for _ in range(times)]


def test_repeated_auth_failures_get_429(services: ServiceFactory) -> None:
    service = services.start(auth_failure_limit=3, auth_failure_window_seconds=30)
    responses = _hammer(service, 5)
    assert [r.status_code for r in responses] == [401, 401, 401, 429, 429]
    blocked = responses[-1]
    assert 1 <= int(blocked.headers["retry-after"]) <= 30
    assert blocked.json()["error"]["code"] == "too_many_auth_failures"
    # Runnable routes (bearer or playground cookie) share the count.
    runnable = httpx.post(
        f"{service.url}/runnables/completion/invoke",
        json={"input": {"input": "x"}},
        cookies={"ahc_token": "forged"},
    )
    assert runnable.status_code == 429
    # Only failures are limited: a valid token from the same address still works.
    assert httpx.get(f"{service.api}/models", headers=service.headers()).status_code == 200


def test_missing_token_is_not_counted(services: ServiceFactory) -> None:
    service = services.start(auth_failure_limit=2, auth_failure_window_seconds=30)
    with httpx.Client(base_url=service.url, timeout=10) as client:
        statuses = [client.get("/api/models").status_code for _ in range(5)]
    assert statuses == [401] * 5
    assert httpx.get(f"{service.api}/models", headers=service.headers()).status_code == 200


def test_block_ends_with_the_window(services: ServiceFactory) -> None:
    import time

    service = services.start(auth_failure_limit=1, auth_failure_window_seconds=1)
    assert [r.status_code for r in _hammer(service, 2)] == [401, 429]
    time.sleep(1.2)
    assert [r.status_code for r in _hammer(service, 2)] == [401, 429]


def test_auth_failures_are_shared_through_redis(services: ServiceFactory) -> None:
    prefix = f"ahc-test-{uuid.uuid4().hex[:8]}:"
    common = {
        "redis_url": "redis://127.0.0.1:6379/0",
        "redis_prefix": prefix,
        "auth_failure_limit": 4,
        "auth_failure_window_seconds": 30,
    }
    one, two = services.start(**common), services.start(**common)
    assert [r.status_code for r in _hammer(one, 2)] == [401, 401]
    assert [r.status_code for r in _hammer(two, 3)] == [401, 401, 429]
    assert [r.status_code for r in _hammer(one, 1)] == [429]


# --- fuzz findings (LangServe bodies) -------------------------------------------------------


@pytest.mark.parametrize("runnable", ["completion", "prompt", "retriever", "chat", "rag"])
@pytest.mark.parametrize(
    "body",
    [
        {"inputs": None, "config": []},
        {"inputs": "x"},
        {},
        {"inputs": [{"input": "x"}], "config": [1]},
        {"inputs": [{"input": "x"}], "config": [{}, {}]},
    ],
)
def test_bad_batch_bodies_are_422(service: RunningService, runnable: str, body: dict) -> None:
    response = httpx.post(
        f"{service.url}/runnables/{runnable}/batch",
        json=body,
        headers=service.headers(),
        timeout=30,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("runnable", ["chat", "completion"])
@pytest.mark.parametrize("depth", [200, 5000, 100_000])
def test_deeply_nested_json_is_4xx(service: RunningService, runnable: str, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    response = httpx.post(
        f"{service.url}/runnables/{runnable}/invoke",
        content=f'{{"input": {nested}}}',
        headers={**service.headers(), "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 422, response.text[:200]
    assert response.json()["error"]["code"] == "invalid_request"


def test_deeply_nested_json_on_the_api_is_4xx(service: RunningService) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    response = httpx.post(
        f"{service.api}/chat/completions",
        content=f'{{"model": "gpt-4o-mini", "messages": {nested}}}',
        headers={**service.headers(), "Content-Type": "application/json"},
        timeout=30,
    )
    assert 400 <= response.status_code < 500, response.text[:200]


# --- decompression bombs ------------------------------------------------------------------


def test_docx_bomb_upload_is_413_naming_the_file_and_cap(services: ServiceFactory) -> None:
    from tests.support.knowledge import upload
    from tests.unit.test_loader_bombs import docx_bomb

    service = services.start(embedding_model="text-embedding-3-small")
    response = upload(service, [("bomb.docx", docx_bomb(80 * 1024 * 1024))])
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "document_too_large"
    assert "bomb.docx" in error["message"] and "cap" in error["message"]
