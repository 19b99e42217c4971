"""Migrations on both backends: only ahc_ tables, our own version table, LangGraph apart."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cli import app
from db.migrate import downgrade, sync_url, upgrade
from tests.support.service import ServiceFactory


def tables(url: str, schema: str | None = None) -> set[str]:
    engine = sa.create_engine(sync_url(url))
    try:
        return set(sa.inspect(engine).get_table_names(schema=schema))
    finally:
        engine.dispose()


def test_upgrade_creates_only_prefixed_tables(db_services: ServiceFactory) -> None:
    settings = db_services.settings()
    upgrade(settings)
    upgrade(settings)  # idempotent
    names = tables(settings.resolved_database_url)
    assert {"ahc_chat_threads", "ahc_alembic_version"} <= names
    assert all(n.startswith("ahc_") for n in names), names
    downgrade(settings, "base")
    assert "ahc_chat_threads" not in tables(settings.resolved_database_url)


@pytest.mark.postgres
def test_db_upgrade_command_puts_langgraph_in_its_schema(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AHC_DATABASE_URL", pg_url)
    monkeypatch.setenv("AHC_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "checkpoints" in tables(pg_url, schema="ahc_langgraph")
    assert not any(n.startswith("checkpoint") for n in tables(pg_url))


def test_migrations_match_the_models(db_services: ServiceFactory) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from db import models  # noqa: F401
    from db.base import VERSION_TABLE, Base

    settings = db_services.settings()
    upgrade(settings)
    engine = sa.create_engine(sync_url(settings.resolved_database_url))
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "version_table": VERSION_TABLE,
                "include_name": lambda name, type_, _p: type_ != "table" or name.startswith("ahc_"),
            },
        )
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()
