""".env.example documents every setting: a knob added to Settings without a line there fails."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices

from core.config import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def _names(field_name: str) -> set[str]:
    """The environment variables that set ``field_name``."""
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        return {str(choice) for choice in alias.choices}
    if isinstance(alias, str):
        return {alias}
    return {f"AHC_{field_name.upper()}"}


def test_every_setting_has_a_line_in_env_example() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    missing = [
        sorted(_names(name))[0]
        for name in Settings.model_fields
        if not any(f"{env}=" in text for env in _names(name))
    ]
    assert missing == [], f"settings missing from .env.example: {missing}"
