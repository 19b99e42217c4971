"""ORM models of the service's own tables (all prefixed ``ahc_``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, LargeBinary, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, Timestamped, UtcDateTime, utcnow


class ChatThread(Timestamped, Base):
    """A conversation with memory; its messages live in LangGraph's checkpointer.

    The key is (org, thread id): two organizations may use the same thread id without
    ever seeing each other's conversation.
    """

    __tablename__ = "ahc_chat_threads"

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str | None] = mapped_column(String(200), default=None)
    model: Mapped[str | None] = mapped_column(String(128), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSON, default=dict, nullable=False
    )

    __table_args__ = (Index("ix_ahc_chat_threads_owner", "org_id", "user_id", "updated_at"),)

    @property
    def checkpoint_key(self) -> str:
        """The LangGraph ``thread_id``: namespaced by org so ids never collide."""
        return checkpoint_key(self.org_id, self.id)


def checkpoint_key(org_id: str, thread_id: str) -> str:
    """LangGraph thread id of an org's thread."""
    return f"{org_id}/{thread_id}"


class UsageEvent(Base):
    """One model or embedding call, as accounted: who, what, how many tokens, what it cost.

    Written in batches by ``accounting.recorder``; never updated.
    """

    __tablename__ = "ahc_usage_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, nullable=False)
    org_id: Mapped[str] = mapped_column(String(128), nullable=False)
    user_id: Mapped[str] = mapped_column(String(128), nullable=False)
    route: Mapped[str] = mapped_column(String(64), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    estimated: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(18, 8), default=Decimal(0), nullable=False)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cached: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    thread_id: Mapped[str | None] = mapped_column(String(128), default=None)
    template_name: Mapped[str | None] = mapped_column(String(128), default=None)
    template_version: Mapped[int | None] = mapped_column(Integer, default=None)

    __table_args__ = (
        Index("ix_ahc_usage_events_org_time", "org_id", "created_at"),
        Index("ix_ahc_usage_events_org_user_time", "org_id", "user_id", "created_at"),
    )


class OrgLimit(Base):
    """Spending and rate limits of an organization (``user_id`` empty) or one of its users.

    ``None`` means unlimited. Enforced by ``limits.enforcer`` with counters shared by every
    instance (Redis) or held in the process (embedded default).
    """

    __tablename__ = "ahc_limits"

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True, default="")
    requests_per_minute: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tokens_per_minute: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tokens_per_month: Mapped[int | None] = mapped_column(BigInteger, default=None)
    cost_usd_per_month: Mapped[Decimal | None] = mapped_column(Numeric(18, 6), default=None)
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )
    updated_by: Mapped[str | None] = mapped_column(String(128), default=None)


class ProviderKey(Timestamped, Base):
    """An organization's own provider key (bring your own key), encrypted at rest.

    Only the ciphertext and the last four characters are stored; the key is never returned.
    """

    __tablename__ = "ahc_provider_keys"

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(String(2048), nullable=False)
    last4: Mapped[str] = mapped_column(String(4), nullable=False)
    updated_by: Mapped[str | None] = mapped_column(String(128), default=None)


class CachedResponse(Base):
    """An exact-match response cache entry (the embedded default's shared tier)."""

    __tablename__ = "ahc_response_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)

    __table_args__ = (Index("ix_ahc_response_cache_expires", "expires_at"),)
