"""The container files say what the service needs: checked fast, in CI, without docker.

``scripts/container-check.sh`` builds and runs the image for real (slow, outside CI); here
the compose file is parsed and its services, ports, commands, health checks and every
``AHC_*`` variable are checked against the code (a renamed setting fails this test), and
the Dockerfile keeps its promises (base, lock, non-root user, health check, OpenMP).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from cli import app as cli_app
from core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SERVICE_IMAGES = ("migrate", "api", "worker", "chroma")  # this project's image
BACKING = {"postgres", "redis"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _env_names() -> set[str]:
    """Every variable ``Settings`` reads (``AHC_`` + field, and the fields' aliases)."""
    names = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"AHC_{field_name.upper()}")
    return names


def _cli_commands() -> set[tuple[str, ...]]:
    """``serve``, ``worker``, ``db upgrade``... as the CLI defines them."""
    import typer.main

    group = typer.main.get_command(cli_app)
    commands: set[tuple[str, ...]] = set()
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        commands.add((name,))
        for sub in getattr(command, "commands", {}):
            commands.add((name, sub))
    return commands


def test_compose_names_the_services_and_their_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*SERVICE_IMAGES, *BACKING}
    api = services["api"]
    assert api["ports"] == ["127.0.0.1:8000:8000"]
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        assert depends["redis"] == {"condition": "service_healthy"}
        assert depends["chroma"] == {"condition": "service_healthy"}
        assert "ahc-data:/data" in services[name]["volumes"]  # one generated secret for both
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert set(compose["volumes"]) >= {"ahc-data", "chroma-data", "postgres-data", "redis-data"}


def test_compose_commands_exist_in_the_cli(compose: dict[str, Any]) -> None:
    commands = _cli_commands()
    for name in ("migrate", "api", "worker"):
        argv = compose["services"][name]["command"]
        assert argv[0] == "ai-helper-core"
        words = tuple(a for a in argv[1:] if not a.startswith("-"))
        assert words[:2] in commands or words[:1] in commands, argv
    assert compose["services"]["chroma"]["command"][:2] == ["chroma", "run"]


def test_compose_variables_are_settings_and_wire_the_backing_services(
    compose: dict[str, Any],
) -> None:
    known = _env_names()
    for name in SERVICE_IMAGES:
        env = compose["services"][name].get("environment") or {}
        unknown = {k for k in env if k not in known}
        assert not unknown, f"{name}: not settings: {unknown}"
    env = compose["services"]["api"]["environment"]
    assert (
        env["AHC_DATABASE_URL"].startswith("postgresql://")
        and "@postgres:5432/" in env["AHC_DATABASE_URL"]
    )
    assert env["AHC_REDIS_URL"].startswith("redis://redis:6379")
    assert env["AHC_CHROMA_URL"] == "http://chroma:8000"
    assert env["AHC_JOB_QUEUE"] == "procrastinate"  # `worker` refuses anything else
    assert env["AHC_MIGRATE_ON_START"] == "false"  # `migrate` runs it once
    # The values parse as Settings (unset ${VARS} arrive as empty strings).
    values = {k: re.sub(r"\$\{[^}]*\}", "", str(v)) for k, v in env.items()}
    settings = Settings(_env_file=None, **_as_fields(values))  # type: ignore[call-arg]
    assert settings.is_postgres and settings.jwt_secret is None
    assert settings.openai_api_key is None  # the embedded model answers


def _as_fields(env: dict[str, str]) -> dict[str, str]:
    fields = {f"AHC_{name.upper()}": name for name in Settings.model_fields}
    fields["OPENAI_API_KEY"] = "openai_api_key"
    return {fields[k]: v for k, v in env.items()}


def test_compose_has_health_checks_and_grace_periods(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "worker", "chroma", "postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert "/api/v2/heartbeat" in " ".join(services["chroma"]["healthcheck"]["test"])
    api, worker = services["api"], services["worker"]
    # docker stop sends SIGTERM, then SIGKILL after stop_grace_period: it must outlast ours.
    grace = int(api["environment"]["AHC_SHUTDOWN_GRACE_SECONDS"])
    assert _seconds(api["stop_grace_period"]) > grace
    assert _seconds(worker["stop_grace_period"]) > float(
        worker["environment"]["AHC_JOB_SHUTDOWN_SECONDS"]
    )


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match.group(1))


def test_dockerfile_builds_from_the_lock_and_runs_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert len(stages) >= 2 and stages[0] == stages[-1] == "python:3.11-slim"  # multi-stage
    assert "uv sync --frozen --no-dev" in text
    assert "libgomp1" in text  # llama.cpp's OpenMP runtime
    users = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    healthcheck = re.search(r"^HEALTHCHECK .*?(?<!\\)$", text, flags=re.MULTILINE | re.DOTALL)
    assert healthcheck and "/healthz" in text[healthcheck.start() : healthcheck.start() + 400]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "data/"} <= set(ignored)  # no secrets or local state
