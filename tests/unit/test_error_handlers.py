"""A busy database answers 503 with Retry-After in the one error shape, never a bare 500."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from core.errors import install_error_handlers


@pytest.fixture
async def locked_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """An app writing to a SQLite file whose write lock another connection holds."""
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")  # the write lock, held for the whole test
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.05})
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/write")
    async def write() -> dict[str, bool]:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        return {"ok": True}

    yield app
    await engine.dispose()
    holder.execute("ROLLBACK")
    holder.close()


async def test_a_locked_database_answers_503_with_retry_after(locked_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=locked_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/write")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["code"] == "database_unavailable"
    assert "database is busy" in error["message"]
