"""Chat threads: the org/user ownership of LangGraph conversations.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``ahc_chat_threads``."""
    op.create_table(
        "ahc_chat_threads",
        sa.Column("org_id", sa.String(length=128), nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_ahc_chat_threads")),
    )
    op.create_index(
        "ix_ahc_chat_threads_owner",
        "ahc_chat_threads",
        ["org_id", "user_id", "updated_at"],
    )


def downgrade() -> None:
    """Drop ``ahc_chat_threads``."""
    op.drop_index("ix_ahc_chat_threads_owner", table_name="ahc_chat_threads")
    op.drop_table("ahc_chat_threads")
