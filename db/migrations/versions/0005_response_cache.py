"""Exact-match response cache.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``ahc_response_cache``."""
    op.create_table(
        "ahc_response_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=128), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_ahc_response_cache")),
    )
    op.create_index("ix_ahc_response_cache_expires", "ahc_response_cache", ["expires_at"])


def downgrade() -> None:
    """Drop ``ahc_response_cache``."""
    op.drop_index("ix_ahc_response_cache_expires", table_name="ahc_response_cache")
    op.drop_table("ahc_response_cache")
