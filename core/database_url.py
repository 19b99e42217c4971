"""The database URLs operators write, turned into the async SQLAlchemy URL the service uses.

Operators copy URLs from their platform (``postgres://`` from Heroku-style dashboards,
``postgresql://`` from libpq, ``sqlite:///path`` from SQLAlchemy's docs); the service
runs on async drivers only (psycopg 3, aiosqlite), so it picks the driver itself instead
of failing at start-up with a SQLAlchemy traceback.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

_POSTGRES = {"postgres", "postgresql"}
_SQLITE = {"sqlite"}


def normalize_database_url(raw: str) -> str:
    """The async SQLAlchemy URL for ``raw``, or a ``ValueError`` that says what is wrong.

    ``postgres``/``postgresql`` with any driver become ``postgresql+psycopg``; ``sqlite``
    with any driver becomes ``sqlite+aiosqlite`` and needs a file path (an in-memory
    database is not shared between the pool's connections).
    """
    text = raw.strip()
    try:
        url: URL = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise ValueError(
            "not a database URL (expected postgresql://user@host/db or sqlite:///path)"
        ) from exc
    backend = url.get_backend_name()
    if backend in _POSTGRES:
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend in _SQLITE:
        if not url.database or url.database == ":memory:":
            raise ValueError("a SQLite URL needs a file path (sqlite:///path/to/file.sqlite)")
        return url.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database {backend!r}: use PostgreSQL or SQLite")
