"""Sections → chunks small enough to embed, each still knowing its page and section.

Splitting happens per section rather than over the joined text, so a chunk never spans
two PDF pages or two headings and can always cite one of each. With ``headings``, every
chunk's text starts with its document's title and section path (``Title > Section``): a
chunk cut from the middle of a section still says what it is about, to the embedder and to
the keyword index (measured in bench/rag_quality.py).
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


TITLE_MAX_CHARS = 80
"""A first line longer than this is prose, not a title."""


def title_of(document: ParsedDocument) -> str | None:
    """The document's title: its first line, when short (a markdown ``#`` stripped)."""
    for line in document.sections[0].text.splitlines() if document.sections else []:
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= TITLE_MAX_CHARS else None
    return None


def heading(title: str | None, section: str | None) -> str | None:
    """``Title > Section`` without repeating the title (markdown paths start with it)."""
    parts = [title] if title else []
    for part in (section or "").split(" > "):
        part = part.strip().lstrip("#").strip()
        if part and part not in parts:
            parts.append(part)
    return " > ".join(parts) or None


def _with_heading(text: str, head: str | None) -> str:
    """``text`` under ``head``, unless it already starts with the head's last part."""
    if head is None:
        return text
    first = text.lstrip().split("\n", 1)[0].lstrip("#").strip()
    if head == first or (" > " not in head and first.startswith(head)):
        return text
    return f"{head}\n{text}"


def split(
    document: ParsedDocument,
    *,
    chunk_size: int = 1000,
    chunk_overlap: int = 150,
    headings: bool = False,
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
    title = title_of(document) if headings else None
    chunks: list[Chunk] = []
    for section in document.sections:
        head = heading(title, section.section) if headings else None
        for text in splitter.split_text(section.text):
            if text.strip():
                text = _with_heading(text, head)
                chunks.append(Chunk(text, len(chunks), section.page, section.section))
    return chunks
