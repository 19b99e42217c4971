"""Fixtures for the browser tests: the real service as a subprocess and Debian's chromium.

The service runs exactly as an operator starts it (``ai-helper-core serve``), with a
fresh data dir and no OpenAI key, so the default model is the embedded ``local`` one
and nothing leaves the machine. Chromium is Debian's (``.ci/install-browser``), since
``playwright install`` needs the internet.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
READY_TIMEOUT_S = 120.0  # a loaded 2-core CI machine imports LangChain slowly
# Variables that would change which model or secret the service uses, or phone home.
_SCRUBBED_PREFIXES = ("AHC_", "OPENAI_", "LANGCHAIN_", "LANGSMITH_")


@dataclass(frozen=True)
class PlaygroundService:
    """A running service: its base URL and a token minted with its own secret."""

    url: str
    token: str
    log: Path

    def playground(self, runnable: str = "completion") -> str:
        """URL of a runnable's playground page."""
        return f"{self.url}/runnables/{runnable}/playground/"


def _cli() -> list[str]:
    """The ``ai-helper-core`` command of this venv (module form if the script is absent)."""
    script = Path(sys.executable).with_name("ai-helper-core")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def _service_env(data_dir: Path) -> dict[str, str]:
    """The caller's environment minus provider/service settings, plus the test data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env["AHC_DATA_DIR"] = str(data_dir)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``/readyz`` until 200; fail fast with the log if the process dies."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the service exited with {proc.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the service was not ready within {READY_TIMEOUT_S:.0f} s:\n{_tail(log)}")


@pytest.fixture(scope="package")
def playground_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaygroundService]:
    """Start ``ai-helper-core serve`` on a free port; stop it at the end of the session.

    The cwd is the temporary dir, so a developer's ``.env`` (perhaps with an OpenAI key)
    is not read. ``token`` runs with the same data dir: the JWT secret is generated there
    on first use and both processes must share it.
    """
    root = tmp_path_factory.mktemp("browser-service")
    data_dir = root / "data"
    env = _service_env(data_dir)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_cli(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(url, proc, log)
        minted = subprocess.run(
            [*_cli(), "token", "--org", "org-browser", "--user", "alice"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        yield PlaygroundService(url=url, token=minted.stdout.strip(), log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


# Package scope, not session: playwright's sync API keeps an event loop running in the main
# thread while it is open, which would break the async tests collected after these.
@pytest.fixture(scope="package")
def playwright_session() -> Iterator[Playwright]:
    """One playwright driver for the browser tests."""
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="package")
def browser(playwright_session: Playwright) -> Iterator[Browser]:
    """Debian's headless chromium (install it with ``.ci/install-browser``)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run .ci/install-browser")
    browser = playwright_session.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile per test, so no cookie leaks from one test into another."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A tab in the test's own profile."""
    return context.new_page()
