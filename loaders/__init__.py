"""Document ingestion for the knowledge base: bytes in, text sections and chunks out.

Ingestion is agnostic to how the bytes arrived (an upload, a URL fetch, a sync job): callers
hand over the bytes, the file name and, if known, the declared MIME type; ``parse`` sniffs
the real kind from the content and returns sections that remember their page or heading,
and ``split`` cuts them into chunks to embed. Failures are ``LoaderError`` subclasses with a
stable ``code``, an HTTP ``status`` and a message naming the file. Nothing here imports
FastAPI or touches a database, and the heavy parsing libraries load only when used.
"""

from loaders.errors import (
    DocumentTooLarge,
    EmptyDocument,
    LoaderError,
    ParseCancelled,
    UnparseableDocument,
    UnsupportedType,
)
from loaders.parsers import ParsedDocument, Section, parse
from loaders.sniff import CONTENT_TYPES, sniff_type
from loaders.splitter import Chunk, split

__all__ = [
    "CONTENT_TYPES",
    "Chunk",
    "DocumentTooLarge",
    "EmptyDocument",
    "LoaderError",
    "ParseCancelled",
    "ParsedDocument",
    "Section",
    "UnparseableDocument",
    "UnsupportedType",
    "parse",
    "sniff_type",
    "split",
]
