"""JSON log lines name the request, org and user, and never carry tokens, keys or documents."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from auth.deps import CurrentPrincipal
from auth.tokens import TokenVerifier, mint_token
from core.logging import JsonFormatter
from core.request_id import RequestIdMiddleware
from tests.support import service as support
from tests.support.knowledge import upload
from tests.support.service import ServiceFactory

ORG_KEY = "sk-org-secret-key-9f8e7d6c5b4a"
DOCUMENT = "Zanzibar quokka ledger 7741: the vault code is azure-walrus."


class _Lines(logging.Handler):
    """Formats each record as it is emitted (inside the request's context)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.formatter = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def lines() -> Iterator[list[str]]:
    handler = _Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler.lines
    root.removeHandler(handler)


def test_request_lines_carry_request_id_org_and_user(tmp_path, lines: list[str]) -> None:
    settings = support.test_settings(tmp_path, "http://127.0.0.1:9")
    app = FastAPI()
    app.state.token_verifier = TokenVerifier(settings)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/who")
    async def who(principal: CurrentPrincipal) -> dict[str, str]:
        logging.getLogger("tests.who").warning("serving")
        return {"org": principal.org_id}

    token = mint_token(settings, org_id="org-log", user_id="u-log", role="member")
    with TestClient(app) as client:
        response = client.get("/who", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    entry = next(json.loads(line) for line in lines if '"serving"' in line)
    assert entry["request_id"] == response.headers["x-request-id"]
    assert (entry["org_id"], entry["user_id"]) == ("org-log", "u-log")
    logging.getLogger("tests.who").warning("outside")  # no request: no caller either
    outside = json.loads(lines[-1])
    assert "org_id" not in outside and "request_id" not in outside


def test_no_token_key_or_document_text_in_the_logs(
    services: ServiceFactory, lines: list[str]
) -> None:
    service = services.start(log_level="DEBUG", embedding_model="text-embedding-3-small")
    headers = service.headers("org-a", "boss", "admin")
    token = headers["Authorization"].removeprefix("Bearer ")
    chat = httpx.post(
        f"{service.api}/chat/completions",
        headers=headers,
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert chat.status_code == 200
    put = httpx.put(
        f"{service.api}/provider-keys/openai", headers=headers, json={"api_key": ORG_KEY}
    )
    assert put.status_code == 200
    with_key = httpx.post(  # the graph path: ChatOpenAI with the org's key
        f"{service.api}/chat/completions",
        headers=headers,
        json={
            "model": "gpt-4o-mini",
            "thread_id": "log-thread",
            "messages": [{"role": "user", "content": f"Summarize: {DOCUMENT}"}],
        },
        timeout=30,
    )
    assert with_key.status_code == 200, with_key.text
    uploaded = upload(service, [("vault.txt", DOCUMENT.encode(), "text/plain")])
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["documents"][0]["status"] == "ready"  # small files: read at once
    logged = "\n".join(lines)
    assert lines, "nothing was logged: the test would prove nothing"
    for secret in (token, ORG_KEY, ORG_KEY[-12:], "azure-walrus", "Zanzibar quokka"):
        assert secret not in logged, secret
