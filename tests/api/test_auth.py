"""Auth on every route: header on /api, header or playground cookie on /runnables."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from tests.support.service import RunningService

API_CALLS = [
    ("GET", "/api/models", None),
    ("POST", "/api/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
    ("POST", "/api/chat/stream", {"messages": [{"role": "user", "content": "x"}]}),
    ("GET", "/api/chat/threads", None),
    ("GET", "/api/chat/threads/t1", None),
    ("DELETE", "/api/chat/threads/t1", None),
    ("POST", "/runnables/completion/invoke", {"input": {"input": "x"}}),
    ("POST", "/runnables/chat/invoke", {"input": {"messages": [{"role": "user", "content": "x"}]}}),
    ("GET", "/runnables/chat/input_schema", None),
    ("GET", "/runnables/chat/playground/", None),
]


def call(
    service: RunningService, method: str, path: str, body: object, headers: dict | None = None
) -> httpx.Response:
    return httpx.request(method, service.url + path, json=body, headers=headers or {})


@pytest.mark.parametrize(("method", "path", "body"), API_CALLS)
def test_missing_token_is_401(
    service: RunningService, method: str, path: str, body: object
) -> None:
    response = call(service, method, path, body)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"


def test_every_bad_credential_is_401_with_a_reason(service: RunningService) -> None:
    secret = service.settings.jwt_secret.get_secret_value()  # type: ignore[union-attr]
    now = int(time.time())
    cases = {
        "Basic abc": "invalid_authorization",
        "Bearer": "invalid_authorization",
        "Bearer garbage": "invalid_token",
        "Bearer "
        + jwt.encode({"sub": "u", "org_id": "o", "exp": now - 60}, secret): "token_expired",
        "Bearer "
        + jwt.encode({"sub": "u", "org_id": "o", "exp": now + 60}, "x" * 40): "invalid_token",
        "Bearer " + jwt.encode({"sub": "u", "exp": now + 60}, secret): "invalid_token",
    }
    for header, code in cases.items():
        response = httpx.get(f"{service.api}/models", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json()["error"]["code"] == code, header
        assert response.headers["www-authenticate"] == "Bearer"


def test_healthz_and_docs_are_public(service: RunningService) -> None:
    assert httpx.get(f"{service.url}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{service.url}/docs").status_code == 200
    assert "/api/chat/completions" in httpx.get(f"{service.url}/openapi.json").json()["paths"]


def test_readyz_checks_database_and_vector_store(service: RunningService) -> None:
    # A cold process may answer "starting" while it opens the vector store; then ready.
    deadline = time.monotonic() + 60
    while True:
        response = httpx.get(f"{service.url}/readyz", timeout=30)
        body = response.json()
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        assert body["checks"]["vector_store"] == "starting", body
        time.sleep(0.5)
    assert body == {"status": "ok", "checks": {"database": "ok", "vector_store": "ok"}}


def test_readyz_reports_unreachable_vector_store(services) -> None:
    service = services.start(chroma_url="http://127.0.0.1:9")
    response = httpx.get(f"{service.url}/readyz", timeout=30)
    assert response.status_code == 503
    assert response.json()["checks"]["vector_store"].startswith("unavailable")


def test_playground_token_link_sets_cookie_and_redirects(service: RunningService) -> None:
    token = service.token()
    response = httpx.get(
        f"{service.url}/runnables/chat/playground/?token={token}&x=1", follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/runnables/chat/playground/?x=1"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"ahc_token={token}")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie


def test_bad_token_link_is_401_without_cookie(service: RunningService) -> None:
    response = httpx.get(
        f"{service.url}/runnables/chat/playground/?token=nope", follow_redirects=False
    )
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


def test_cookie_authorizes_runnables_but_not_the_api(service: RunningService) -> None:
    cookies = {"ahc_token": service.token()}
    with httpx.Client(base_url=service.url, cookies=cookies) as client:
        assert client.get("/runnables/completion/playground/").status_code == 200
        assert client.get("/runnables/completion/input_schema").status_code == 200
        invoke = client.post("/runnables/completion/invoke", json={"input": {"input": "hi"}})
        assert invoke.status_code == 200, invoke.text
        # The REST API takes the header only (no ambient cookie credentials, no CSRF).
        assert client.get("/api/models").status_code == 401


def test_playground_assets_load_with_cookie(service: RunningService) -> None:
    with httpx.Client(base_url=service.url, cookies={"ahc_token": service.token()}) as client:
        page = client.get("/runnables/chat/playground/")
        assert page.status_code == 200
        assets = [
            part.split('"')[0]
            for part in page.text.split('src="')[1:] + page.text.split('href="')[1:]
            if part.startswith("/runnables/chat/playground/assets/")
        ]
        assert assets
        for asset in assets:
            assert client.get(asset).status_code == 200, asset
        assert httpx.get(service.url + assets[0]).status_code == 401
