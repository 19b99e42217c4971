"""The search path's few hot reads, run on the driver's own connection.

Why: a hybrid search at 100k chunks runs five or six short reads, and SQLAlchemy's
statement machinery (ORM compile state, cache key, parameter and result processing, a
greenlet hop) cost 0.7-1.2 ms of CPU for each, more than SQLite's own work: half of a
search's CPU, which is what made 10 concurrent searches queue on the GIL (py-spy profile,
bench/results/search-cpu-2026-12-05c.txt). These statements are written once with ``?``
markers and run as they are on SQLite (aiosqlite) and with ``%s`` on PostgreSQL
(psycopg), on the connection SQLAlchemy checked out, in its transaction if one is open.
Everything else keeps SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeEngine

Row = tuple[Any, ...]


@lru_cache(maxsize=256)
def _for_psycopg(sql: str) -> str:
    """``?`` markers as psycopg's ``%s`` (the statements here never contain ``%``)."""
    if "%" in sql:
        raise ValueError("driver SQL must not contain '%'")
    return sql.replace("?", "%s")


@dataclass(frozen=True, slots=True)
class DriverReads:
    """Reads on one checked-out connection: SQLAlchemy Core for the rest, raw SQL for hot ones."""

    connection: AsyncConnection
    driver: Any
    postgres: bool

    @classmethod
    async def on(cls, connection: AsyncConnection) -> DriverReads:
        """The reads of this connection (SQLite through aiosqlite, PostgreSQL through psycopg)."""
        raw = await connection.get_raw_connection()
        driver = connection.dialect.driver
        if driver not in ("aiosqlite", "psycopg"):
            raise ValueError(f"no driver SQL for {driver!r}")
        return cls(connection, raw.driver_connection, driver == "psycopg")

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """All rows of one ``SELECT`` with ``?`` markers, as tuples.

        The driver's errors are raised as SQLAlchemy's (``OperationalError`` for a locked
        or unreachable database, ...), so the service answers them as it does any other
        statement's (503 with ``Retry-After``, not a bare 500).
        """
        dialect = self.connection.dialect
        base = dialect.dbapi.Error if dialect.dbapi is not None else Exception
        try:
            if self.postgres:
                cursor = await self.driver.execute(_for_psycopg(sql), params)
                return list(await cursor.fetchall())
            async with self.driver.execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except base as exc:
            raise DBAPIError.instance(sql, params, exc, base, dialect=dialect) from exc

    def any_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``: SQL and parameters.

        PostgreSQL takes the list as one array parameter (one statement whatever its
        length, so psycopg prepares it once); SQLite gets one marker per value (callers
        keep lists under its 32k-parameter limit).
        """
        if self.postgres:
            return f"{column} = ANY(?)", [list(values)]
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    def loader(self, type_: TypeEngine[Any]) -> Callable[[Any], Any]:
        """What SQLAlchemy does to a driver value of this column type (a date, JSON, ...)."""
        return _loader(self.connection.dialect, type_)


@lru_cache(maxsize=64)
def _loader(dialect: Dialect, type_: TypeEngine[Any]) -> Callable[[Any], Any]:
    """Built once per dialect and type (building one compiles SQLite's date pattern)."""
    process = type_.dialect_impl(dialect).result_processor(dialect, None)
    return process if process is not None else _same


def _same(value: Any) -> Any:
    return value
