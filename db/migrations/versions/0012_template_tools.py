"""Prompt template versions carry tools and a response format.

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable ``tools`` and ``response_format`` columns (existing rows: none)."""
    op.add_column("ahc_prompt_versions", sa.Column("tools", sa.JSON(), nullable=True))
    op.add_column("ahc_prompt_versions", sa.Column("response_format", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop the two columns (batch: SQLite rebuilds the table)."""
    with op.batch_alter_table("ahc_prompt_versions") as batch:
        batch.drop_column("response_format")
        batch.drop_column("tools")
