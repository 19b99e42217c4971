"""Fixtures of the unit tests that need the service's tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.config import Settings
from db.migrate import upgrade
from db.session import create_engine, create_sessionmaker


@pytest.fixture
async def sessions(
    tmp_path: Path, database_url: str | None
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Migrated tables on a SQLite file in tmp_path, or on the session's PostgreSQL database."""
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=database_url)
    upgrade(settings)
    engine = create_engine(settings)
    yield create_sessionmaker(engine)
    await engine.dispose()
