"""Race-safe "create or replace" of one row: ``INSERT ... ON CONFLICT DO UPDATE``.

Reading a row and inserting it when missing is two statements: two first writers both
see nothing, both insert, and the loser hits the primary key (a 500). One upsert
statement is atomic on PostgreSQL and SQLite alike, so every concurrent writer succeeds
and the last one's values stay, exactly as if they had come one after another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from db.base import Base

Row = TypeVar("Row", bound=Base)


async def upsert(
    session: AsyncSession,
    model: type[Row],
    values: Mapping[str, Any],
    *,
    key: Sequence[str],
) -> Row:
    """Insert ``values``, or update the row with the same ``key`` columns; the row after.

    ``values`` are keyed by column name and hold the key and at least one other column.
    Every column in ``values`` but the key is overwritten on conflict; columns not given
    keep their stored value (or get their insert default). ``onupdate`` functions do not
    run on the conflict path: pass such columns (``updated_at``) in ``values``.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: statement.excluded[name] for name in values if name not in key},
    )
    row = await session.scalar(
        statement.returning(model), execution_options={"populate_existing": True}
    )
    assert row is not None  # RETURNING yields the inserted or updated row
    return row
