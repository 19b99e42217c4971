"""Shared fixtures: the fake OpenAI upstream, PostgreSQL test databases, the live service."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql

from tests.support.service import RunningService, ServiceFactory

if TYPE_CHECKING:
    from tests.fakes.openai_server import FakeOpenAI

pytest_plugins = [
    "tests.fakes.openai_server",  # the `fake_openai` fixture
    "tests.fakes.elevenlabs_server",  # `fake_elevenlabs`
    "tests.fakes.rerank_server",  # `fake_rerank`
    "tests.support.chroma_server",  # `chroma_server`: a real `chroma run`
]

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped afterwards)."""
    name = f"ahc_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Run the test on SQLite (the embedded default) and on PostgreSQL."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def services(tmp_path, fake_openai: FakeOpenAI) -> Iterator[ServiceFactory]:
    """Start services on SQLite with custom settings: ``services.start(**overrides)``."""
    factory = ServiceFactory(tmp_path, fake_openai.base_url, None)
    yield factory
    factory.close()


@pytest.fixture
def service(services: ServiceFactory) -> RunningService:
    """The service with test defaults (SQLite, fake upstream as OpenAI and as `local`)."""
    return services.start()


@pytest.fixture
def db_services(
    tmp_path, fake_openai: FakeOpenAI, database_url: str | None
) -> Iterator[ServiceFactory]:
    """Like ``services``, parametrized over SQLite and PostgreSQL."""
    factory = ServiceFactory(tmp_path, fake_openai.base_url, database_url)
    if database_url is not None:
        empty_service_tables(factory)
    yield factory
    factory.close()


def empty_service_tables(factory: ServiceFactory) -> None:
    """One PostgreSQL database serves the whole session: each test starts with empty tables."""
    from db.migrate import upgrade

    settings = factory.settings()
    upgrade(settings)
    url = settings.resolved_database_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url, autocommit=True) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename LIKE 'ahc\\_%' AND tablename <> 'ahc_alembic_version'"
            )
        ]
        if names:
            conn.execute(
                sql.SQL("TRUNCATE {} CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(n) for n in names)
                )
            )
