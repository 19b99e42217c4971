"""LangGraph checkpointers: SQLite next to the embedded database, PostgreSQL in production.

On PostgreSQL, LangGraph's own tables live in a schema of their own (``ahc_langgraph`` by
default) so they never mix with ai-helper-back's tables; LangGraph runs its own
migrations there (``setup()``), at start-up and in ``ai-helper-core db upgrade``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver
from sqlalchemy.engine import make_url

from core.config import Settings


def postgres_conninfo(settings: Settings) -> str:
    """The libpq URL of the configured SQLAlchemy PostgreSQL URL."""
    url = make_url(settings.resolved_database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@asynccontextmanager
async def open_checkpointer(settings: Settings) -> AsyncIterator[BaseCheckpointSaver]:
    """A ready checkpointer (tables created) for the app's lifetime."""
    if settings.is_postgres:
        async with _postgres_checkpointer(settings) as saver:
            yield saver
        return
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / "checkpoints.sqlite"
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        yield saver


@asynccontextmanager
async def _postgres_checkpointer(settings: Settings) -> AsyncIterator[BaseCheckpointSaver]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg import AsyncConnection, sql
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    conninfo = postgres_conninfo(settings)
    schema = settings.langgraph_schema
    async with await AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    pool = AsyncConnectionPool(
        conninfo,
        min_size=1,
        max_size=10,
        open=False,
        kwargs={
            "autocommit": True,
            "prepare_threshold": 0,
            "row_factory": dict_row,
            "options": f"-c search_path={schema}",
        },
    )
    await pool.open()
    try:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        yield saver
    finally:
        await pool.close()
