"""Start-up with bad settings: one line naming the variable, a non-zero exit, no traceback.

``ai-helper-core serve`` runs as a real subprocess, as an operator starts it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.config import Settings
from core.database_url import normalize_database_url

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "cli.py"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AHC_", "OPENAI_"))}
    env.update(
        AHC_DATA_DIR=str(tmp_path / "data"),
        AHC_LOCAL_MODEL_ENABLED="false",
        AHC_JWT_SECRET="test-secret-test-secret-test-secret!",
        AHC_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def _serve(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CLI), "serve", "--port", "0", *args],
        cwd=tmp_path,  # no developer .env
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AHC_DATABASE_URL", "not a url", "not a database URL"),
        ("AHC_DATABASE_URL", "mysql://db/app", "unsupported database 'mysql'"),
        ("AHC_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/x", "cannot connect"),
        ("AHC_REDIS_URL", "redis://127.0.0.1:1/0", "Redis does not answer"),
        ("AHC_REDIS_URL", "http://127.0.0.1:6379", "not a Redis URL"),
        ("AHC_CHROMA_URL", "http://127.0.0.1:1", "Chroma does not answer"),
        ("AHC_ENCRYPTION_KEYS", '["not-a-fernet-key"]', "not a Fernet key"),
        ("AHC_JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nxx", "not a PEM public key"),
        ("AHC_OPENAI_MODELS", "gpt-4o", "not valid JSON"),
        ("AHC_KNOWLEDGE_WORKERS", "zero", "valid integer"),
    ],
)
def test_bad_setting_stops_serve_with_one_line(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    result = _serve(tmp_path, **{variable: value})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert lines[0].startswith(f"ai-helper-core: configuration error: {variable}")
    assert expected in lines[0]


def test_error_line_does_not_repeat_a_secret(tmp_path: Path) -> None:
    result = _serve(tmp_path, AHC_DATABASE_URL="postgresql://u:hunter2-secret@127.0.0.1:1/x")
    assert result.returncode == 2
    assert "hunter2-secret" not in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_starts_on_a_plain_sqlite_url(tmp_path: Path) -> None:
    """``sqlite:///path`` (no async driver named) used to stop the start-up with a traceback."""
    db = tmp_path / "elsewhere" / "app.sqlite"
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(CLI), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=_env(tmp_path, AHC_DATABASE_URL=f"sqlite:///{db}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /healthz"
            time.sleep(0.2)
        assert db.exists()
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("written", "used"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"),
        ("postgresql://u@db/app", "postgresql+psycopg://u@db/app"),
        ("postgresql+psycopg://u@db/app", "postgresql+psycopg://u@db/app"),
        ("postgresql+psycopg2://u@db/app", "postgresql+psycopg://u@db/app"),
        ("sqlite:////var/lib/ahc/app.sqlite", "sqlite+aiosqlite:////var/lib/ahc/app.sqlite"),
        ("sqlite:///rel.sqlite", "sqlite+aiosqlite:///rel.sqlite"),
        ("sqlite+aiosqlite:///x.sqlite", "sqlite+aiosqlite:///x.sqlite"),
        ("  postgresql://u:p%40w@db/app ", "postgresql+psycopg://u:p%40w@db/app"),
    ],
)
def test_database_url_forms(written: str, used: str) -> None:
    assert normalize_database_url(written) == used
    settings = Settings(_env_file=None, database_url=written)  # type: ignore[call-arg]
    assert settings.resolved_database_url == used


@pytest.mark.parametrize("bad", ["sqlite://", "sqlite:///:memory:", "mongodb://x/y", "::"])
def test_database_url_refusals(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_database_url(bad)


def test_empty_database_url_means_the_default(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url="")  # type: ignore[call-arg]
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
