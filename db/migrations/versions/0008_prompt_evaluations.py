"""Prompt evaluations: runs of template versions over a dataset, with stored results.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the prompt evaluations table."""
    op.create_table(
        "ahc_prompt_evaluations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=128), nullable=False),
        sa.Column("template_name", sa.String(length=128), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("results", sa.JSON(), nullable=True),
        sa.Column("total_items", sa.Integer(), nullable=False),
        sa.Column("done_items", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ahc_prompt_evaluations")),
    )
    op.create_index(
        "ix_ahc_prompt_evaluations_template",
        "ahc_prompt_evaluations",
        ["org_id", "template_name", "created_at"],
    )
    op.create_index("ix_ahc_prompt_evaluations_status", "ahc_prompt_evaluations", ["status"])


def downgrade() -> None:
    """Drop the prompt evaluations table."""
    op.drop_index("ix_ahc_prompt_evaluations_status", table_name="ahc_prompt_evaluations")
    op.drop_index("ix_ahc_prompt_evaluations_template", table_name="ahc_prompt_evaluations")
    op.drop_table("ahc_prompt_evaluations")
