"""The service under test: settings pointing at the fake OpenAI server, tokens, a live server."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from auth.tokens import Role, mint_token
from core.config import Settings
from server import create_app
from tests.support.live_server import LiveServer


def test_settings(data_dir: Path, upstream_url: str, **overrides: Any) -> Settings:
    """Settings for tests: OpenAI and `local` both served by the fake upstream, fast retries."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "environment": "test",
        "jwt_secret": "test-secret-test-secret-test-secret!",
        "openai_api_key": "sk-service-key",
        "openai_base_url": upstream_url,
        "local_model_base_url": upstream_url,
        "upstream_backoff_seconds": 0.01,
        "upstream_backoff_max_seconds": 0.05,
        "upstream_timeout_seconds": 5.0,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class RunningService:
    """A started service and what a client needs to call it."""

    settings: Settings
    url: str
    app: Any

    @property
    def api(self) -> str:
        """Base URL for OpenAI clients (``base_url=<service>/api``)."""
        return f"{self.url}/api"

    def token(
        self, org: str = "org-a", user: str = "alice", role: Role = "member", **kw: Any
    ) -> str:
        """A valid JWT for ``org``/``user``."""
        return mint_token(self.settings, org_id=org, user_id=user, role=role, **kw)

    def headers(
        self, org: str = "org-a", user: str = "alice", role: Role = "member"
    ) -> dict[str, str]:
        """``Authorization`` header for ``org``/``user``."""
        return {"Authorization": f"Bearer {self.token(org, user, role)}"}


def speech_ws_url(service: RunningService, token: str | None = None) -> str:
    """The live-speech websocket of ``service``, with ``token`` in the query if given."""
    base = service.url.replace("http://", "ws://") + "/api/speech/stream"
    return f"{base}?token={token}" if token else base


def usage_rows(service: RunningService, count: int) -> list[dict[str, str]]:
    """The org's usage export (CSV rows), once it holds ``count`` rows (events are batched)."""
    deadline = time.monotonic() + 10
    while True:
        export = httpx.get(
            f"{service.api}/usage/export",
            params={"format": "csv"},
            headers=service.headers("org-a", "boss", "admin"),
        )
        rows = list(csv.DictReader(io.StringIO(export.text)))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


class ServiceFactory:
    """Starts services with given settings; stops them all at teardown."""

    def __init__(self, tmp_path: Path, upstream_url: str, database_url: str | None) -> None:
        self._tmp_path = tmp_path
        self._upstream_url = upstream_url
        self._database_url = database_url
        self._servers: list[LiveServer] = []

    def settings(self, **overrides: Any) -> Settings:
        """The test settings with ``overrides``."""
        overrides.setdefault("database_url", self._database_url)
        return test_settings(self._tmp_path / "data", self._upstream_url, **overrides)

    def start(self, **overrides: Any) -> RunningService:
        """A live service on a free port."""
        settings = self.settings(**overrides)
        app = create_app(settings)
        server = LiveServer(app).__enter__()
        self._servers.append(server)
        return RunningService(settings=settings, url=server.url, app=app)

    def close(self) -> None:
        """Stop every server this factory started."""
        servers, self._servers = self._servers, []
        for server in reversed(servers):
            server.__exit__(None, None, None)
