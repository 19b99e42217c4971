"""Organizations' own provider keys (encrypted).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``ahc_provider_keys``."""
    op.create_table(
        "ahc_provider_keys",
        sa.Column("org_id", sa.String(length=128), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("ciphertext", sa.String(length=2048), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "provider", name=op.f("pk_ahc_provider_keys")),
    )


def downgrade() -> None:
    """Drop ``ahc_provider_keys``."""
    op.drop_table("ahc_provider_keys")
