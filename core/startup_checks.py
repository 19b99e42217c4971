"""Settings checked before the service starts, each failure one line naming its variable.

An operator who mistypes a URL or a key should read ``AHC_REDIS_URL: cannot connect to
127.0.0.1:6390 (...)`` and an exit code, not a traceback from deep inside a client
library minutes later. :func:`load_settings` turns pydantic's errors into that line;
:func:`check_settings` reaches what the settings name (the database, Redis, Chroma)
and parses the keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.engine import make_url

from core.config import Settings

CONNECT_TIMEOUT_SECONDS = 3.0
_ALIASES = {
    "openai_api_key": "OPENAI_API_KEY",
    "openai_base_url": "OPENAI_BASE_URL",
    "openai_organization": "OPENAI_ORG_ID",
    "elevenlabs_api_key": "ELEVENLABS_API_KEY",
    "elevenlabs_base_url": "ELEVENLABS_BASE_URL",
}
_FIELD_IN_MESSAGE = re.compile(r'field "([a-z0-9_]+)"')


class ConfigError(Exception):
    """A setting the service cannot start with: ``str()`` is the one line to print."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def variable_name(field: str) -> str:
    """The environment variable of a settings field (``redis_url`` → ``AHC_REDIS_URL``)."""
    if field in _ALIASES:
        return f"AHC_{field.upper()} (or {_ALIASES[field]})"
    if field.isupper():  # already an alias (OPENAI_API_KEY)
        return field
    return f"AHC_{field.upper()}"


def load_settings() -> Settings:
    """``Settings()`` from the environment, or a :class:`ConfigError` for the first bad value.

    The message never repeats the value itself: it may be a password or a key.
    """
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(variable_name(field), message) from None
    except SettingsError as exc:  # a JSON-typed variable that is not JSON
        found = _FIELD_IN_MESSAGE.search(str(exc))
        field = found.group(1) if found else "settings"
        raise ConfigError(variable_name(field), "not valid JSON for this setting") from None


def check_settings(settings: Settings) -> None:
    """Raise a :class:`ConfigError` for the first thing the service could not start with."""
    _check_database(settings)
    _check_jwt_public_key(settings)
    if settings.redis_url:
        _check_redis(settings.redis_url)
    if settings.chroma_url:
        _check_chroma(settings.chroma_url)


def _check_database(settings: Settings) -> None:
    """PostgreSQL answers; SQLite's folder exists or can be made."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        folder = Path(url.database or ".").parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                "AHC_DATABASE_URL", f"cannot create {folder}: {exc.strerror}"
            ) from None
        return
    import psycopg

    try:
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, connect_timeout=int(CONNECT_TIMEOUT_SECONDS)):
            pass
    except psycopg.Error as exc:
        where = f"{url.host or 'the local socket'}:{url.port or 5432}/{url.database or ''}"
        reason = _first_line(str(exc)) or type(exc).__name__
        raise ConfigError("AHC_DATABASE_URL", f"cannot connect to {where} ({reason})") from None


def _check_jwt_public_key(settings: Settings) -> None:
    """The RS256 key is a PEM public key (a truncated paste fails here, not per request)."""
    if not settings.jwt_public_key:
        return
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        load_pem_public_key(settings.jwt_public_key.encode())
    except (ValueError, TypeError):
        raise ConfigError(
            "AHC_JWT_PUBLIC_KEY", "not a PEM public key (-----BEGIN PUBLIC KEY-----...)"
        ) from None


def _check_redis(redis_url: str) -> None:
    """Redis answers PING."""
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        client = Redis.from_url(
            redis_url,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=CONNECT_TIMEOUT_SECONDS,
        )
    except ValueError as exc:
        raise ConfigError("AHC_REDIS_URL", f"not a Redis URL ({_first_line(str(exc))})") from None
    try:
        client.ping()
    except RedisError as exc:
        reason = _first_line(str(exc)) or type(exc).__name__
        raise ConfigError("AHC_REDIS_URL", f"Redis does not answer ({reason})") from None
    finally:
        client.close()


def _check_chroma(chroma_url: str) -> None:
    """The Chroma server answers its heartbeat."""
    import httpx

    parsed = urlparse(chroma_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError("AHC_CHROMA_URL", "not an http(s) URL (http://host:8000)")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 8000)
    except ValueError:
        raise ConfigError("AHC_CHROMA_URL", "the port is not a number") from None
    base = f"{parsed.scheme}://{parsed.hostname}:{port}"
    try:
        response = httpx.get(f"{base}/api/v2/heartbeat", timeout=CONNECT_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        reason = _first_line(str(exc)) or type(exc).__name__
        raise ConfigError(
            "AHC_CHROMA_URL", f"Chroma does not answer at {base} ({reason})"
        ) from None
    if response.status_code >= 400:
        raise ConfigError(
            "AHC_CHROMA_URL",
            f"{base} answered {response.status_code} to Chroma's heartbeat (not a Chroma server?)",
        )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
