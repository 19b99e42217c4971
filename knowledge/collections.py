"""Collections: how a new one is chunked, and the per-instance cache searches read.

Pure apart from the clock: the service layer does the SQL (``knowledge.registry``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from db.models import KnowledgeCollection
from knowledge import registry
from knowledge.vectors import Distance

DEFAULT_COLLECTION = "default"


class InvalidChunking(ValueError):
    """A collection's chunk overlap is not smaller than its chunk size."""


@dataclass(frozen=True)
class CollectionOptions:
    """How a new collection embeds and chunks (``None``: the service default)."""

    embedding_model: str | None = None
    distance: Distance | None = None
    chunk_size: int | None = None
    chunk_overlap: int | None = None


def new_collection(
    org_id: str,
    name: str,
    options: CollectionOptions,
    *,
    embedding_model: str,
    embedding_dim: int,
    default_size: int,
    default_overlap: int,
) -> KnowledgeCollection:
    """A collection record (not yet stored) with its own fresh Chroma collection name.

    The default overlap is capped at half the chunk size, so a small chunk size alone
    never makes the defaults invalid.
    """
    size = options.chunk_size or default_size
    overlap = (
        options.chunk_overlap
        if options.chunk_overlap is not None
        else min(default_overlap, size // 2)
    )
    if overlap >= size:
        raise InvalidChunking("chunk_overlap must be smaller than chunk_size")
    collection_id = str(uuid.uuid4())
    return KnowledgeCollection(
        id=collection_id,
        org_id=org_id,
        name=name,
        embedding_model=embedding_model,
        embedding_dim=embedding_dim,
        distance=options.distance or "cosine",
        chunk_size=size,
        chunk_overlap=overlap,
        vector_collection=registry.vector_collection_name(collection_id),
    )


def vector_names(collection: KnowledgeCollection) -> list[str]:
    """The Chroma collections a document's vectors live in (two during a re-embedding)."""
    names = [collection.vector_collection]
    if collection.building_collection:
        names.append(collection.building_collection)
    return names


class CollectionCache:
    """Collection records by (org, name) for searches, each kept ``ttl`` seconds.

    A record changes only when a re-embedding swaps it, and a search that hits the dropped
    Chroma collection re-reads the record and retries, so a stale entry costs one retry.
    The key is a tuple, never a joined string: no org's key can equal another's.
    """

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[tuple[str, str], tuple[float, KnowledgeCollection]] = {}

    def get(self, org_id: str, name: str) -> KnowledgeCollection | None:
        """The cached record, or None when absent or expired."""
        cached = self._entries.get((org_id, name))
        if cached is None or cached[0] <= time.monotonic():
            return None
        return cached[1]

    def put(self, org_id: str, name: str, collection: KnowledgeCollection | None) -> None:
        """Remember a fresh read (``None``: absent, never cached)."""
        if collection is None:
            self._entries.pop((org_id, name), None)
        else:
            self._entries[(org_id, name)] = (time.monotonic() + self._ttl, collection)

    def forget(self, collection_id: str) -> None:
        """Drop a collection's record (after this instance swapped its vectors)."""
        for key, (_, cached) in list(self._entries.items()):
            if cached.id == collection_id:
                del self._entries[key]
