"""Keyword index: postings stored once; a forward row per chunk replaces the chunk index.

Also the write log (``ahc_keyword_log``) that lets search processes patch the postings they
keep in memory instead of re-reading them after each write.

The secondary index ``ix_ahc_keyword_postings_chunk`` was a second full copy of every
posting (it found a chunk's postings on removal). ``ahc_keyword_chunks`` holds each chunk's
length and terms instead, built here from the existing postings in SQL (their ``#length``
rows become the lengths and are dropped), so upgraded indexes stay exact without
re-tokenizing anything.

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LENGTH_TERM = "#length"
"""The reserved posting that held every chunk's length before this revision."""


def _aggregate(item: str) -> str:
    """The dialect's string aggregation of ``item`` over a group, space-separated, sorted."""
    if op.get_bind().dialect.name == "postgresql":
        return f"string_agg({item}, ' ' ORDER BY term)"
    return f"group_concat({item}, ' ')"  # any order: readers do not depend on it


def upgrade() -> None:
    """Create the forward rows from the postings, then drop the length postings and index."""
    op.create_table(
        "ahc_keyword_chunks",
        sa.Column("chunk_id", sa.String(length=80), nullable=False),
        sa.Column("collection_id", sa.String(length=36), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("chunk_id", name=op.f("pk_ahc_keyword_chunks")),
    )
    op.create_index(
        "ix_ahc_keyword_chunks_collection", "ahc_keyword_chunks", ["collection_id"], unique=False
    )
    item = (
        f"CASE WHEN term = '{LENGTH_TERM}' THEN NULL WHEN tf = 1 THEN term"
        " ELSE term || ':' || CAST(tf AS VARCHAR(12)) END"
    )
    # The inner ORDER BY (chunk, term) walks the chunk index: one pass, in group order.
    op.execute(
        "INSERT INTO ahc_keyword_chunks (chunk_id, collection_id, length, terms)"
        f" SELECT chunk_id, collection_id, MAX(chunk_length), COALESCE({_aggregate(item)}, '')"
        " FROM (SELECT chunk_id, collection_id, term, tf, chunk_length"
        "  FROM ahc_keyword_postings ORDER BY chunk_id, term) AS p"
        " GROUP BY chunk_id, collection_id"
    )
    op.execute(f"DELETE FROM ahc_keyword_postings WHERE term = '{LENGTH_TERM}'")
    op.drop_index("ix_ahc_keyword_postings_chunk", table_name="ahc_keyword_postings")
    op.create_table(
        "ahc_keyword_log",
        sa.Column("collection_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("chunk_id", sa.String(length=80), nullable=False),
        sa.Column("added", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint(
            "collection_id", "version", "chunk_id", name=op.f("pk_ahc_keyword_log")
        ),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    """Restore the chunk index and the length postings; drop the forward rows and the log."""
    op.drop_table("ahc_keyword_log")
    op.create_index(
        "ix_ahc_keyword_postings_chunk",
        "ahc_keyword_postings",
        ["chunk_id", "term", "tf", "chunk_length"],
    )
    op.execute(
        "INSERT INTO ahc_keyword_postings (collection_id, term, chunk_id, tf, chunk_length)"
        f" SELECT collection_id, '{LENGTH_TERM}', chunk_id, length, length"
        " FROM ahc_keyword_chunks"
    )
    op.execute("DELETE FROM ahc_keyword_terms WHERE term = '#version'")
    op.drop_index("ix_ahc_keyword_chunks_collection", table_name="ahc_keyword_chunks")
    op.drop_table("ahc_keyword_chunks")
