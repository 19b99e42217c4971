"""The console entry point and the settings' environment names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auth.tokens import TokenVerifier
from cli import app
from core.config import Settings


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("AHC_JWT_SECRET", "AHC_JWT_PUBLIC_KEY", "OPENAI_API_KEY", "AHC_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AHC_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no developer .env
    return tmp_path


def test_token_command_mints_a_verifiable_token(env: Path) -> None:
    result = CliRunner().invoke(
        app, ["token", "--org", "acme", "--user", "alice", "--role", "admin", "--ttl", "60"]
    )
    assert result.exit_code == 0, result.output
    principal = TokenVerifier(Settings()).verify(result.output.strip())
    assert (principal.org_id, principal.user_id, principal.role) == ("acme", "alice", "admin")
    assert (env / "jwt_secret").exists()


def test_token_command_rejects_bad_role(env: Path) -> None:
    result = CliRunner().invoke(app, ["token", "--org", "a", "--user", "b", "--role", "root"])
    assert result.exit_code != 0
    assert "admin or member" in result.output


def test_serve_help_lists_its_options() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    for flag in ("--host", "--port", "--workers", "--reload"):
        assert flag in result.output


def test_usual_provider_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://proxy.local/v1")
    monkeypatch.setenv("AHC_OPENAI_MODELS", json.dumps(["gpt-4o", "gpt-4o-mini"]))
    settings = Settings()
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-from-env"
    assert settings.openai_base_url == "http://proxy.local/v1"
    assert settings.openai_models == ["gpt-4o", "gpt-4o-mini"]


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AHC_UPSTREAM_MAX_RETRIES", raising=False)
    (tmp_path / ".env").write_text("AHC_UPSTREAM_MAX_RETRIES=5\n")
    assert Settings().upstream_max_retries == 5


def test_empty_openai_key_means_no_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "")
    assert Settings().openai_api_key is None
