"""Storage settings: where the service keeps its data (files, database, vectors)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from core.database_url import normalize_database_url


class StorageSettings(BaseModel):
    """Data directory, database URL and schemas, Chroma."""

    data_dir: Path = Field(
        default=Path("data"),
        description="Where the embedded defaults keep their files (SQLite, Chroma, secrets).",
    )
    database_url: str | None = Field(
        default=None,
        description="Database URL. Default: SQLite in data_dir. Accepts postgresql://, "
        "postgres://, postgresql+psycopg://, sqlite:///path (the async driver is chosen here).",
    )
    migrate_on_start: bool = Field(
        default=True, description="Run `db upgrade` on start-up (the embedded default)."
    )
    langgraph_schema: str = Field(
        default="ahc_langgraph",
        description="PostgreSQL schema that holds LangGraph's checkpoint tables.",
    )
    chroma_url: str | None = Field(
        default=None, description="Chroma server URL; embedded Chroma in data_dir when unset."
    )

    @field_validator("database_url")
    @classmethod
    def _async_database_url(cls, value: str | None) -> str | None:
        """Operators' URL forms (``postgres://``, ``sqlite:///``) get the async driver."""
        if value is None or not value.strip():
            return None
        return normalize_database_url(value)

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL, defaulting to SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ai-helper-core.sqlite').resolve()}"

    @property
    def is_postgres(self) -> bool:
        """Whether persistence (and LangGraph's checkpointer) uses PostgreSQL."""
        return self.resolved_database_url.startswith("postgresql")
