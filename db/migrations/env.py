"""Alembic environment: the service's metadata, its own version table, only ``ahc_`` tables."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool, text

from db import models  # noqa: F401  (registers the tables on the metadata)
from db.base import TABLE_PREFIX, VERSION_TABLE, Base

config = context.config

# Several instances may start at once against one PostgreSQL: one migrates, the others wait.
MIGRATION_LOCK_ID = 0x414843  # "AHC"


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    """Autogenerate looks only at our tables, never at ai-helper-back's."""
    if type_ == "table":
        return bool(name and name.startswith(TABLE_PREFIX))
    return True


def run_migrations() -> None:
    """Run migrations online (the service always has a database to talk to)."""
    connectable = config.attributes.get("connection")
    if connectable is None:
        connectable = engine_from_config(
            config.get_section(config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            version_table=VERSION_TABLE,
            include_name=_include_name,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})"))
            context.run_migrations()


run_migrations()
