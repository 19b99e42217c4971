"""The metadata every chunk carries, in Chroma and in search results.

Built from the registry rows by one function, so a chunk found by vector search (metadata
read back from Chroma) and one found by keyword search (rebuilt from SQL) look the same.
The user's metadata goes first and the server-owned keys last: a client cannot overwrite
``document_id`` or ``org_id``.
"""

from __future__ import annotations

from typing import Any

from db.models import KnowledgeCollection, KnowledgeDocument
from knowledge.chunk_texts import DocumentHead

RESERVED_KEYS = frozenset(
    {
        "org_id",
        "document_id",
        "chunk_id",
        "collection",
        "filename",
        "content_type",
        "chunk_index",
        "page",
        "section",
        "created_at",
    }
)


class InvalidMetadata(ValueError):
    """User metadata that cannot be stored with chunks."""


def validate_user_metadata(metadata: Any) -> dict[str, Any]:
    """Flat JSON object of strings, numbers and booleans (what Chroma can filter on)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidMetadata("metadata must be a JSON object")
    if len(metadata) > 64:
        raise InvalidMetadata("metadata has more than 64 keys")
    for key, value in metadata.items():
        if not key or len(key) > 128 or key.startswith("$"):
            raise InvalidMetadata(f"metadata key {key!r} is not allowed")
        if key in RESERVED_KEYS:
            raise InvalidMetadata(f"metadata key {key!r} is reserved by the service")
        if not isinstance(value, str | int | float | bool) or (
            isinstance(value, float) and value != value
        ):
            raise InvalidMetadata(
                f"metadata[{key!r}] must be a string, number or boolean (got "
                f"{type(value).__name__})"
            )
        if isinstance(value, str) and len(value) > 2000:
            raise InvalidMetadata(f"metadata[{key!r}] is longer than 2000 characters")
    return dict(metadata)


def chunk_metadata(
    document: KnowledgeDocument | DocumentHead,
    collection: KnowledgeCollection,
    *,
    chunk_id: str,
    index: int,
    page: int | None,
    section: str | None,
) -> dict[str, Any]:
    """The metadata of one chunk (Chroma refuses ``None`` values, so absent keys are left out)."""
    meta: dict[str, Any] = dict(document.metadata_ or {})
    meta.update(
        org_id=document.org_id,
        document_id=document.id,
        chunk_id=chunk_id,
        collection=collection.name,
        filename=document.filename,
        content_type=document.content_type,
        chunk_index=index,
        created_at=document.created_at.isoformat(),
    )
    if page is not None:
        meta["page"] = page
    if section:
        meta["section"] = section
    return meta
