"""LangGraph checkpointers: SQLite next to the embedded database, PostgreSQL in production.

On PostgreSQL, LangGraph's own tables live in a schema of their own (``ahc_langgraph`` by
default) so they never mix with ai-helper-back's tables; LangGraph runs its own
migrations there (``setup()``), at start-up and in ``ai-helper-core db upgrade``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from sqlalchemy.engine import make_url

from core.config import Settings

_SETUP_LOCK_ID = 0x41484C47  # "AHLG"


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

    await asyncio.to_thread(settings.data_dir.mkdir, parents=True, exist_ok=True)
    path = settings.data_dir / "checkpoints.sqlite"
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        yield saver


@asynccontextmanager
async def _postgres_checkpointer(settings: Settings) -> AsyncIterator[BaseCheckpointSaver]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg import AsyncConnection, sql

    conninfo = postgres_conninfo(settings)
    schema = settings.langgraph_schema
    async with _open_pool(conninfo, schema) as pool:
        saver = AsyncPostgresSaver(pool)
        async with await AsyncConnection.connect(conninfo, autocommit=True) as lock:
            # Instances starting together run LangGraph's migrations one at a time.
            await lock.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK_ID,))
            try:
                await lock.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
                await saver.setup()
            finally:
                await lock.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_ID,))
        yield saver


@asynccontextmanager
async def _open_pool(conninfo: str, schema: str) -> AsyncIterator[Any]:
    """A connection pool whose connections see only LangGraph's schema."""
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

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
        yield pool
    finally:
        await pool.close()
