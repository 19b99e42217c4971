"""Alembic, driven from code: ``ai-helper-core db upgrade`` and start-up call ``upgrade``.

No ``alembic.ini``: the configuration is built here from :class:`Settings`, and the
version table is ``ahc_alembic_version`` so ai-helper-back's own migrations are untouched.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from core.config import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def sync_url(url: str) -> str:
    """Alembic runs synchronously: swap async drivers for their sync siblings."""
    return url.replace("sqlite+aiosqlite", "sqlite").replace(
        "postgresql+asyncpg", "postgresql+psycopg"
    )


def alembic_config(settings: Settings) -> Config:
    """An Alembic config pointing at this package's migrations and the settings' DB."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option(
        "sqlalchemy.url", sync_url(settings.resolved_database_url).replace("%", "%%")
    )
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the service's tables up to ``revision``."""
    if settings.resolved_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    """Step the service's tables back to ``revision``."""
    command.downgrade(alembic_config(settings), revision)


def revision(settings: Settings, message: str) -> None:
    """Autogenerate a migration from the models (developers)."""
    command.revision(alembic_config(settings), message=message, autogenerate=True)
