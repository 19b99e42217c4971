"""Speech limits (audio seconds, TTS characters per month) and their usage columns.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the speech limits to ``ahc_limits`` and the speech amounts to the usage events."""
    with op.batch_alter_table("ahc_limits") as batch:
        batch.add_column(sa.Column("audio_seconds_per_month", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("tts_characters_per_month", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("ahc_usage_events") as batch:
        batch.add_column(
            sa.Column(
                "audio_seconds",
                sa.Numeric(precision=12, scale=3),
                server_default="0",
                nullable=False,
            )
        )
        batch.add_column(
            sa.Column("tts_characters", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    """Drop the speech columns."""
    with op.batch_alter_table("ahc_usage_events") as batch:
        batch.drop_column("tts_characters")
        batch.drop_column("audio_seconds")
    with op.batch_alter_table("ahc_limits") as batch:
        batch.drop_column("tts_characters_per_month")
        batch.drop_column("audio_seconds_per_month")
