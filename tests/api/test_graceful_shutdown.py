"""SIGTERM stops ``ai-helper-core serve`` gracefully, as an orchestrator sends it.

The service runs as a real subprocess (uvicorn's signal handling only exists in the main
thread of a process). Two streams are mid-answer when SIGTERM arrives — the OpenAI-style
``/api/chat/completions`` and LangServe's ``/runnables/completion/stream`` — and the upstream
sends one token every 0.25 s. The server stops accepting connections at once, both streams
still end properly (``[DONE]``, ``end``), the usage events (buffered for an hour by the
settings) are flushed to the database at shutdown, and the process exits 0 within the
grace period.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from auth.tokens import mint_token
from core.config import Settings
from tests.fakes.openai_server import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
SECRET = "graceful-shutdown-secret-graceful-shutdown!"
GRACE_SECONDS = 20
QUESTION = "one two three four five six seven eight nine ten"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], seconds: float = 60) -> None:
    """Poll ``check`` until it holds."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Served:
    """``ai-helper-core serve`` in a subprocess, on SQLite in a data dir of its own."""

    def __init__(self, tmp_path: Path, upstream: str) -> None:
        self.data_dir = tmp_path / "data"
        self.url = f"http://127.0.0.1:{_free_port()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AHC_", "OPENAI_"))}
        env.update(
            AHC_DATA_DIR=str(self.data_dir),
            AHC_JWT_SECRET=SECRET,
            AHC_OPENAI_API_KEY="sk-service-key",
            AHC_OPENAI_BASE_URL=upstream,
            AHC_LOCAL_MODEL_BASE_URL=upstream,
            AHC_SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
            AHC_USAGE_FLUSH_INTERVAL_SECONDS="3600",  # only the shutdown writes them
            AHC_LOG_LEVEL="WARNING",
        )
        port = self.url.rsplit(":", 1)[1]
        self.log = tmp_path / "serve.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli", "serve", "--port", port],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def accepts_connections(self) -> bool:
        try:
            httpx.get(f"{self.url}/healthz", timeout=2)
        except httpx.ConnectError:
            return False
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def served(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[Served]:
    server = Served(tmp_path, fake_openai.base_url)
    try:
        wait_until(server.ready, 120)
        yield server
    finally:
        server.stop()


def _headers() -> dict[str, str]:
    settings = Settings(_env_file=None, jwt_secret=SECRET)  # type: ignore[call-arg]
    token = mint_token(settings, org_id="org-term", user_id="alice", role="member")
    return {"Authorization": f"Bearer {token}"}


class StreamReader(threading.Thread):
    """Reads one streamed answer to its end (or its failure) in the background."""

    def __init__(self, url: str, body: dict[str, object]) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.lines: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream(
                "POST", self.url, json=self.body, headers=_headers(), timeout=60
            ) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if line:
                        self.lines.append(line)
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_sigterm_lets_streams_finish_flushes_usage_and_exits_0(
    served: Served, fake_openai: FakeOpenAI
) -> None:
    fake_openai.token_delay = 0.25  # ten words: each stream lasts about 2.5 s
    question = [{"role": "user", "content": QUESTION}]
    openai_stream = StreamReader(
        f"{served.url}/api/chat/completions",
        {"model": "gpt-4o-mini", "stream": True, "messages": question},
    )
    langserve_stream = StreamReader(
        f"{served.url}/runnables/completion/stream", {"input": {"input": QUESTION}}
    )
    openai_stream.start()
    langserve_stream.start()
    # Both are mid-answer: each has received its first token (and not its last).
    wait_until(lambda: any("one" in line for line in openai_stream.lines), 30)
    wait_until(lambda: any("one" in line for line in langserve_stream.lines), 30)

    served.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: not served.accepts_connections(), 10)  # no new connections...
    assert openai_stream.is_alive() and langserve_stream.is_alive()  # ...while these run on

    assert served.proc.wait(GRACE_SECONDS + 15) == 0, served.log.read_text()[-3000:]
    openai_stream.join(5)
    langserve_stream.join(5)
    assert openai_stream.error is None and langserve_stream.error is None

    assert openai_stream.lines[-1] == "data: [DONE]"
    text = "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for line in openai_stream.lines[:-1]
        if line.startswith("data: ") and (chunk := json.loads(line[6:]))["choices"]
    )
    assert text.endswith("nine ten")  # the whole answer, not a cut one
    assert langserve_stream.lines[-1] == "event: end", langserve_stream.lines[-4:]
    streamed = "".join(
        json.loads(line[6:]) for line in langserve_stream.lines if line.startswith('data: "')
    )
    assert streamed.endswith("nine ten"), streamed

    with sqlite3.connect(served.data_dir / "ai-helper-core.sqlite") as db:
        routes = sorted(
            route
            for (route,) in db.execute(
                "SELECT route FROM ahc_usage_events WHERE org_id = 'org-term' AND status = 'ok'"
            )
        )
    assert len(routes) == 2, routes  # both answers accounted, written at shutdown
