"""Why a document could not be ingested, as stable codes the API can answer with.

Each error carries a machine-readable ``code``, the HTTP ``status`` a route should answer
and a ``message`` that names the file, so a user who uploaded twenty files knows which one
failed and why. Nothing here imports FastAPI: the API layer maps these to its error shape.
"""

from __future__ import annotations


class LoaderError(Exception):
    """A document that cannot become text; ``code`` and ``status`` are set by subclasses."""

    code: str = "loader_error"
    status: int = 422

    def __init__(self, filename: str, reason: str) -> None:
        self.filename = filename
        self.reason = reason
        self.message = f"{filename or 'the file'}: {reason}"
        super().__init__(self.message)


class UnsupportedType(LoaderError):
    """The bytes are not a format we read (an image, a spreadsheet, an archive, ...)."""

    code = "unsupported_media_type"
    status = 415


class EmptyDocument(LoaderError):
    """The file is readable but holds no text (zero bytes, whitespace, a scanned PDF)."""

    code = "empty_document"
    status = 422


class UnparseableDocument(LoaderError):
    """The format is recognised but the file is broken, encrypted or otherwise unreadable."""

    code = "unparseable_document"
    status = 422


class DocumentTooLarge(LoaderError):
    """The document expands past a cap: decompressed size, extracted text, pages, members.

    Small files can unpack to hundreds of megabytes (a ``.docx`` is a ZIP of XML); the caps
    refuse them before a parser holds them in memory.
    """

    code = "document_too_large"
    status = 413


class ParseCancelled(Exception):
    """The caller stopped a parse in progress (a cancelled ingestion): not a document fault."""
