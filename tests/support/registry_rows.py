"""Registry rows for tests that write the knowledge tables directly (no upload, no Chroma)."""

from __future__ import annotations

import uuid
from typing import Any

from db.models import KnowledgeCollection, KnowledgeDocument


def collection_row(collection_id: str) -> KnowledgeCollection:
    """A collection of org-a named after its id (PostgreSQL's database is shared by tests)."""
    return KnowledgeCollection(
        id=collection_id,
        org_id="org-a",
        name=f"c-{collection_id}",
        embedding_model="e5",
        embedding_dim=4,
        chunk_size=1000,
        chunk_overlap=100,
        vector_collection=f"v-{collection_id[:8]}",
    )


def document_row(
    collection_id: str,
    document_id: str,
    *,
    status: str = "ready",
    filename: str = "doc.txt",
    content_type: str = "text/plain",
    metadata: dict[str, Any] | None = None,
) -> KnowledgeDocument:
    """A document of org-a in that collection."""
    return KnowledgeDocument(
        id=document_id,
        org_id="org-a",
        collection_id=collection_id,
        filename=filename,
        content_type=content_type,
        size_bytes=1,
        sha256=uuid.uuid4().hex,
        status=status,
        metadata_=metadata or {},
        created_by="alice",
    )
