"""Prompt templates: templates, their immutable versions, movable labels.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the prompt template tables."""
    op.create_table(
        "ahc_prompt_templates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ahc_prompt_templates")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_ahc_prompt_templates_org_id")),
    )
    op.create_table(
        "ahc_prompt_versions",
        sa.Column("template_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("template_format", sa.String(length=16), nullable=False),
        sa.Column("input_variables", sa.JSON(), nullable=False),
        sa.Column("optional_variables", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["ahc_prompt_templates.id"],
            name=op.f("fk_ahc_prompt_versions_template_id_ahc_prompt_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("template_id", "version", name=op.f("pk_ahc_prompt_versions")),
    )
    op.create_table(
        "ahc_prompt_labels",
        sa.Column("template_id", sa.String(length=36), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["ahc_prompt_templates.id"],
            name=op.f("fk_ahc_prompt_labels_template_id_ahc_prompt_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("template_id", "label", name=op.f("pk_ahc_prompt_labels")),
    )


def downgrade() -> None:
    """Drop the prompt template tables."""
    op.drop_table("ahc_prompt_labels")
    op.drop_table("ahc_prompt_versions")
    op.drop_table("ahc_prompt_templates")
