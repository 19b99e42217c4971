"""Sections → chunks small enough to embed, each still knowing its page and section.

Splitting happens per section rather than over the joined text, so a chunk never spans
two PDF pages or two headings and can always cite one of each.
"""

from __future__ import annotations

from dataclasses import dataclass

from loaders.parsers import ParsedDocument


@dataclass(frozen=True)
class Chunk:
    """A piece of a document to embed; ``index`` orders chunks over the whole document."""

    text: str
    index: int
    page: int | None
    section: str | None


def split(
    document: ParsedDocument, *, chunk_size: int = 1000, chunk_overlap: int = 150
) -> list[Chunk]:
    """Cut each section with a recursive character splitter (paragraphs, lines, words).

    Raises:
        ValueError: ``chunk_size`` is not positive, or ``chunk_overlap`` is negative or not
            smaller than ``chunk_size``.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if not 0 <= chunk_overlap < chunk_size:
        raise ValueError(
            f"chunk_overlap must be >= 0 and < chunk_size ({chunk_size}), got {chunk_overlap}"
        )
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    chunks: list[Chunk] = []
    for section in document.sections:
        for text in splitter.split_text(section.text):
            if text.strip():
                chunks.append(Chunk(text, len(chunks), section.page, section.section))
    return chunks
