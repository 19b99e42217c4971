"""ORM models of the service's own tables (all prefixed ``ahc_``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, Timestamped


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
