"""Service instances as separate operating-system processes, as production runs them.

``ai-helper-core serve`` and ``ai-helper-core worker`` started with an environment of their
own: separate memory, separate data directories, nothing shared but what the settings name
(PostgreSQL, Redis, the Chroma server). In-process test servers share module state; only
processes prove that no state that must be shared lives in one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from auth.tokens import Role, mint_token
from core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "scale-out-secret-scale-out-secret!"


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    """One ``ai-helper-core serve`` process and what a client needs to call it."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    settings: Settings = field(repr=False)

    @property
    def api(self) -> str:
        """Base URL for OpenAI clients (``base_url=<service>/api``)."""
        return f"{self.url}/api"

    def headers(
        self, org: str = "org-a", user: str = "alice", role: Role = "member"
    ) -> dict[str, str]:
        """``Authorization`` header for ``org``/``user`` (every instance shares the secret)."""
        token = mint_token(self.settings, org_id=org, user_id=user, role=role)
        return {"Authorization": f"Bearer {token}"}

    def kill(self) -> None:
        """``kill -9``: no shutdown hook runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


class Fleet:
    """Starts API and worker processes on shared settings; stops them all at teardown."""

    def __init__(self, tmp_path: Path, env: Mapping[str, str]) -> None:
        self._tmp_path = tmp_path
        self._env = {**os.environ, "AHC_JWT_SECRET": JWT_SECRET, **env}
        self._procs: list[subprocess.Popen[bytes]] = []
        self._settings = Settings(_env_file=None, jwt_secret=JWT_SECRET, data_dir=tmp_path)  # type: ignore[call-arg]

    def _spawn(self, name: str, args: list[str], extra: Mapping[str, str]) -> tuple[Any, Path]:
        data_dir = self._tmp_path / name
        data_dir.mkdir(parents=True, exist_ok=True)
        log = data_dir / "process.log"
        env = {**self._env, "AHC_DATA_DIR": str(data_dir), **extra}
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            cwd=ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self._procs.append(proc)
        return proc, log

    def serve(self, name: str, **extra: str) -> ServiceProcess:
        """An API instance on a free port, once ``/healthz`` answers."""
        port = free_port()
        proc, log = self._spawn(name, ["serve", "--port", str(port)], extra)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        return ServiceProcess(name, proc, url, log, self._settings)

    def worker(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """An ``ai-helper-core worker`` process."""
        proc, _log = self._spawn(name, ["worker", *args], {})
        return proc

    def close(self) -> None:
        """SIGTERM everything still running, then SIGKILL what does not stop."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
