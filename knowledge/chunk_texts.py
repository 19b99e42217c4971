"""What a search shows of its chunks: their texts and documents, read in one statement.

Hybrid's vector hits and every keyword hit carry only chunk ids; their texts (for the
fusion's language check and the response) and their documents (for the metadata) come
from the registry. Only chunks of ready documents are returned, so a document being
deleted or re-ingested never shows half its chunks. One driver statement (see
``db.driver_sql``): it replaced an ORM read of the chunks and another of their documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from db.base import Base
from db.driver_sql import DriverReads
from db.models import KnowledgeChunk, KnowledgeDocument

_BATCH = 500
"""Ids per statement (under SQLite's parameter limit)."""


class DocumentHead(NamedTuple):
    """The document fields a chunk's metadata carries (``knowledge.metadata.chunk_metadata``)."""

    id: str
    org_id: str
    filename: str
    content_type: str
    created_at: datetime
    metadata_: dict[str, Any]


class ChunkText(NamedTuple):
    """A chunk as a search shows it: its text, where it sits, and its document."""

    id: str
    chunk_index: int
    text: str
    page: int | None
    section: str | None
    document: DocumentHead


_chunk = Base.metadata.tables[KnowledgeChunk.__tablename__]
_document = Base.metadata.tables[KnowledgeDocument.__tablename__]

_SELECT = (
    # The chunks first, once (MATERIALIZED): left to itself, PostgreSQL's generic plan
    # looked them up again for every document of the table (27 ms instead of 3 at 100k).
    "WITH c AS MATERIALIZED (SELECT id, document_id, chunk_index, text, page, section "
    f"FROM {_chunk.name} WHERE {{among}}) "
    "SELECT c.id, c.chunk_index, c.text, c.page, c.section, "
    "d.id, d.org_id, d.filename, d.content_type, d.created_at, d.metadata "
    f"FROM c JOIN {_document.name} d ON d.id = c.document_id WHERE d.status = 'ready'"
)


async def ready_chunks(reads: DriverReads, ids: Sequence[str]) -> dict[str, ChunkText]:
    """The chunks of ready documents among ``ids``, by id (unknown ids: left out)."""
    created_at = reads.loader(_document.c.created_at.type)
    metadata = reads.loader(_document.c.metadata.type)
    documents: dict[str, DocumentHead] = {}
    found: dict[str, ChunkText] = {}
    for start in range(0, len(ids), _BATCH):
        among, params = reads.any_of("id", ids[start : start + _BATCH])
        for row in await reads.rows(_SELECT.format(among=among), params):
            document = documents.get(row[5])
            if document is None:
                document = DocumentHead(
                    row[5], row[6], row[7], row[8], created_at(row[9]), metadata(row[10]) or {}
                )
                documents[row[5]] = document
            found[row[0]] = ChunkText(row[0], row[1], row[2], row[3], row[4], document)
    return found
