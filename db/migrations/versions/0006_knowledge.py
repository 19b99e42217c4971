"""Knowledge base: collections, documents, original files, chunks, keyword postings.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    """Create the knowledge tables."""
    op.create_table(
        "ahc_knowledge_collections",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("embedding_model", sa.String(length=128), nullable=False),
        sa.Column("embedding_dim", sa.Integer(), nullable=False),
        sa.Column("distance", sa.String(length=8), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("chunk_overlap", sa.Integer(), nullable=False),
        sa.Column("vector_collection", sa.String(length=63), nullable=False),
        sa.Column("building_collection", sa.String(length=63), nullable=True),
        sa.Column("building_model", sa.String(length=128), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ahc_knowledge_collections")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_ahc_knowledge_collections_org_id")),
    )
    op.create_table(
        "ahc_knowledge_documents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=128), nullable=False),
        sa.Column("collection_id", sa.String(length=36), nullable=False),
        sa.Column("filename", sa.String(length=512), nullable=False),
        sa.Column("content_type", sa.String(length=128), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=1000), nullable=True),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["ahc_knowledge_collections.id"],
            name=op.f("fk_ahc_knowledge_documents_collection_id_ahc_knowledge_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ahc_knowledge_documents")),
        sa.UniqueConstraint(
            "collection_id", "sha256", name=op.f("uq_ahc_knowledge_documents_collection_id")
        ),
    )
    op.create_index(
        "ix_ahc_knowledge_documents_org_time", "ahc_knowledge_documents", ["org_id", "created_at"]
    )
    op.create_table(
        "ahc_knowledge_files",
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["ahc_knowledge_documents.id"],
            name=op.f("fk_ahc_knowledge_files_document_id_ahc_knowledge_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("document_id", name=op.f("pk_ahc_knowledge_files")),
    )
    op.create_table(
        "ahc_knowledge_chunks",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("collection_id", sa.String(length=36), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("section", sa.String(length=512), nullable=True),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["ahc_knowledge_documents.id"],
            name=op.f("fk_ahc_knowledge_chunks_document_id_ahc_knowledge_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ahc_knowledge_chunks")),
    )
    op.create_index(
        "ix_ahc_knowledge_chunks_document", "ahc_knowledge_chunks", ["document_id", "chunk_index"]
    )
    op.create_index("ix_ahc_knowledge_chunks_collection", "ahc_knowledge_chunks", ["collection_id"])
    op.create_table(
        "ahc_keyword_postings",
        sa.Column("collection_id", sa.String(length=36), nullable=False),
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.Column("chunk_id", sa.String(length=80), nullable=False),
        sa.Column("tf", sa.Integer(), nullable=False),
        sa.Column("chunk_length", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "collection_id",
            "term",
            "chunk_id",
            name=op.f("pk_ahc_keyword_postings"),
            postgresql_include=["tf", "chunk_length"],
        ),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_ahc_keyword_postings_chunk",
        "ahc_keyword_postings",
        ["chunk_id", "term", "tf", "chunk_length"],
    )
    op.create_table(
        "ahc_keyword_terms",
        sa.Column("collection_id", sa.String(length=36), nullable=False),
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.Column("df", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", "term", name=op.f("pk_ahc_keyword_terms")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    """Drop the knowledge tables."""
    op.drop_table("ahc_keyword_terms")
    op.drop_index("ix_ahc_keyword_postings_chunk", table_name="ahc_keyword_postings")
    op.drop_table("ahc_keyword_postings")
    op.drop_index("ix_ahc_knowledge_chunks_collection", table_name="ahc_knowledge_chunks")
    op.drop_index("ix_ahc_knowledge_chunks_document", table_name="ahc_knowledge_chunks")
    op.drop_table("ahc_knowledge_chunks")
    op.drop_table("ahc_knowledge_files")
    op.drop_index("ix_ahc_knowledge_documents_org_time", table_name="ahc_knowledge_documents")
    op.drop_table("ahc_knowledge_documents")
    op.drop_table("ahc_knowledge_collections")
