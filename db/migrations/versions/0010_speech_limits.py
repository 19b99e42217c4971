"""Speech: limits (audio seconds, TTS characters per month), usage columns, transcription jobs.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
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

    op.create_table(
        "ahc_speech_transcriptions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("audio", sa.LargeBinary(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ahc_speech_transcriptions")),
    )
    op.create_index(
        "ix_ahc_speech_transcriptions_org_time",
        "ahc_speech_transcriptions",
        ["org_id", "created_at"],
    )
    op.create_index("ix_ahc_speech_transcriptions_status", "ahc_speech_transcriptions", ["status"])


def downgrade() -> None:
    """Drop the speech table and columns."""
    op.drop_table("ahc_speech_transcriptions")
    with op.batch_alter_table("ahc_usage_events") as batch:
        batch.drop_column("tts_characters")
        batch.drop_column("audio_seconds")
    with op.batch_alter_table("ahc_limits") as batch:
        batch.drop_column("tts_characters_per_month")
        batch.drop_column("audio_seconds_per_month")
