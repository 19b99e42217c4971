"""Bytes of a known kind → text sections, one small parser per format.

A section is the unit that keeps its provenance (PDF page, heading path, CSV row range)
so that chunks cut from it can cite where they came from. Parsers only raise ordinary
exceptions; ``parse`` turns every failure into a ``LoaderError`` naming the file, so no
library exception (pypdf, python-docx, bs4) ever reaches the caller. The heavy libraries
are imported inside the parser that needs them, keeping ``import loaders`` cheap.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loaders.errors import (
    DocumentTooLarge,
    EmptyDocument,
    LoaderError,
    ParseCancelled,
    UnparseableDocument,
)
from loaders.sniff import CONTENT_TYPES, csv_dialect, decode_text, sniff_type

if TYPE_CHECKING:
    from bs4 import Tag

CSV_ROWS_PER_SECTION = 20
MAX_TEXT_CHARS = 20_000_000
"""Most characters of text one document may yield (~5M tokens): beyond it the document is
refused (413) rather than chunked and embedded for hours."""
MAX_PDF_PAGES = 5_000
_MD_HEADINGS = [("#", "h1"), ("##", "h2"), ("###", "h3")]
_HTML_DROPPED = ("script", "style", "nav", "head", "noscript", "template", "svg", "iframe")
_HTML_PARAGRAPHS = frozenset(
    "p div section article main header footer aside table ul ol dl pre blockquote form"
    " figure h1 h2 h3 h4 h5 h6 hr".split()
)
_HTML_LINES = frozenset("li tr br dt dd caption figcaption option".split())
_HTML_CELLS = frozenset(("td", "th"))
_DOCX_HEADINGS = {"Title": 0, "Heading 1": 0, "Heading 2": 1}


@dataclass(frozen=True)
class Section:
    """A stretch of text with where it came from: a PDF page, a heading path, a row range."""

    text: str
    page: int | None = None
    section: str | None = None


@dataclass(frozen=True)
class ParsedDocument:
    """A document as text sections, with its sniffed kind and canonical content type."""

    kind: str
    content_type: str
    sections: list[Section]


Checkpoint = Callable[[], None]
"""Called by the parsers between pages, blocks and rows: raises :class:`ParseCancelled` once
the caller has asked to stop (parsing runs in a thread, which no cancellation reaches)."""


def _checkpoint(stop: Callable[[], bool] | None) -> Checkpoint:
    def check() -> None:
        if stop is not None and stop():
            raise ParseCancelled("the parse was stopped")

    return check


def parse(
    data: bytes,
    filename: str,
    declared: str | None = None,
    *,
    stop: Callable[[], bool] | None = None,
) -> ParsedDocument:
    """Parse ``data`` by its sniffed kind into non-empty sections.

    ``stop``: polled between pages, blocks and rows; once it answers True the parse ends
    with :class:`ParseCancelled` (a cancelled ingestion stops its parsing thread).

    Raises:
        UnsupportedType: not a format we read.
        EmptyDocument: zero bytes, or no text once parsed.
        UnparseableDocument: the parser failed (broken, encrypted, invalid).
    """
    kind = sniff_type(data, filename, declared)
    try:
        sections = _PARSERS[kind](data, _checkpoint(stop))
    except ParseCancelled:
        raise
    except DocumentTooLarge as exc:  # raised inside a parser, which knows no file name
        raise DocumentTooLarge(filename, exc.reason) from None
    except LoaderError:
        raise
    except Exception as exc:
        reason = (str(exc) or type(exc).__name__)[:300]
        raise UnparseableDocument(filename, f"cannot read it as {kind}: {reason}") from exc
    if sum(len(s.text) for s in sections) > MAX_TEXT_CHARS:
        raise _too_much_text(filename)
    kept = [s for s in sections if s.text.strip()]
    if not kept:
        hint = " (a scanned PDF has no text layer)" if kind == "pdf" else ""
        raise EmptyDocument(filename, f"no text found in the {kind} file{hint}")
    return ParsedDocument(kind=kind, content_type=CONTENT_TYPES[kind], sections=kept)


def _too_much_text(filename: str) -> DocumentTooLarge:
    return DocumentTooLarge(
        filename, f"more than {MAX_TEXT_CHARS} characters of text (the cap per document)"
    )


def _parse_txt(data: bytes, check: Checkpoint) -> list[Section]:
    return [Section(decode_text(data))]


def _parse_md(data: bytes, check: Checkpoint) -> list[Section]:
    from langchain_text_splitters import MarkdownHeaderTextSplitter

    splitter = MarkdownHeaderTextSplitter(_MD_HEADINGS, strip_headers=False)
    keys = [key for _, key in _MD_HEADINGS]
    sections = []
    for doc in splitter.split_text(decode_text(data)):
        check()
        path = " > ".join(str(doc.metadata[k]) for k in keys if doc.metadata.get(k))
        # The splitter ends lines with markdown hard breaks ("  \n"); they are noise here.
        text = "\n".join(line.rstrip() for line in doc.page_content.split("\n"))
        sections.append(Section(text, section=path or None))
    return sections


def _parse_html(data: bytes, check: Checkpoint) -> list[Section]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(data), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(_HTML_DROPPED):
        tag.decompose()
    check()
    return list(_html_sections(soup.body or soup, title or None, check))


def _html_sections(root: Tag, title: str | None, check: Checkpoint) -> Iterator[Section]:
    """Walk the tree once, cutting a section at each h1/h2 (path "h1 > h2")."""
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString

    path: list[str] = []
    parts: list[str] = []

    def flush() -> Section:
        return Section(_tidy("".join(parts)), section=" > ".join(path) or title)

    for node in root.descendants:
        if isinstance(node, Tag):
            if node.name in ("h1", "h2"):
                check()
                yield flush()
                parts.clear()
                heading = node.get_text(" ", strip=True)
                path[:] = [heading] if node.name == "h1" else [*path[:1], heading]
            if node.name in _HTML_PARAGRAPHS:
                parts.append("\n\n")
            elif node.name in _HTML_LINES:
                parts.append("\n")
            elif node.name in _HTML_CELLS:
                parts.append(" | ")
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            # Newlines in the source are plain whitespace; only block tags break lines.
            parts.append(re.sub(r"\s+", " ", str(node)))
    yield flush()


def _tidy(text: str) -> str:
    """Collapse the whitespace of markup: spaces within lines, blank lines between them."""
    lines = [" ".join(line.split()).strip(" |") for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _parse_pdf(data: bytes, check: Checkpoint) -> list[Section]:
    from pypdf import PdfReader

    # Some producers put junk (a BOM, whitespace) before the header; pypdf insists on it first.
    reader = PdfReader(io.BytesIO(data[data.find(b"%PDF-") :]))
    if reader.is_encrypted and not reader.decrypt(""):
        raise ValueError("the PDF is password-protected")
    if not reader.pages:
        raise ValueError("the PDF has no pages")
    if len(reader.pages) > MAX_PDF_PAGES:
        raise DocumentTooLarge("", f"more than {MAX_PDF_PAGES} pages (the cap)")
    sections: list[Section] = []
    total = 0
    for number, page in enumerate(reader.pages, start=1):
        check()
        text = page.extract_text() or ""
        total += len(text)
        if total > MAX_TEXT_CHARS:  # stop extracting: the rest would be refused anyway
            raise _too_much_text("")
        sections.append(Section(text, page=number))
    return sections


def _parse_docx(data: bytes, check: Checkpoint) -> list[Section]:
    import docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    check()
    path: list[str] = []
    parts: list[str] = []
    sections: list[Section] = []
    for block in document.iter_inner_content():
        check()
        if isinstance(block, Table):
            parts.append(_docx_table(block))
            continue
        style = block.style.name if block.style is not None else ""
        level = _DOCX_HEADINGS.get(style or "")
        if level is not None and block.text.strip():
            sections.append(Section("\n".join(parts), section=" > ".join(path) or None))
            parts.clear()
            path[:] = [*path[:level], block.text.strip()]
        parts.append(block.text)
    sections.append(Section("\n".join(parts), section=" > ".join(path) or None))
    return sections


def _docx_table(table: Any) -> str:
    """One line per row, cells joined by `` | `` (a merged cell counted once)."""
    lines = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = cell.text.strip()
            if not cells or text != cells[-1]:
                cells.append(text)
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def _parse_csv(data: bytes, check: Checkpoint) -> list[Section]:
    text = decode_text(data)
    dialect = csv_dialect(text) or csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        return []
    header = [name.strip() or f"column {i}" for i, name in enumerate(rows[0], start=1)]
    records = [row for row in rows[1:] if any(cell.strip() for cell in row)]
    sections = []
    for start in range(0, len(records), CSV_ROWS_PER_SECTION):
        check()
        group = records[start : start + CSV_ROWS_PER_SECTION]
        text = "\n\n".join(_csv_record(header, row) for row in group)
        last = start + len(group)
        sections.append(Section(text, section=f"rows {start + 1}-{last}"))
    return sections


def _csv_record(header: list[str], row: list[str]) -> str:
    """One ``column: value`` line per non-empty cell (extra cells get numbered names)."""
    lines = []
    for i, value in enumerate(row):
        name = header[i] if i < len(header) else f"column {i + 1}"
        if value.strip():
            lines.append(f"{name}: {value.strip()}")
    return "\n".join(lines)


def _parse_json(data: bytes, check: Checkpoint) -> list[Section]:
    value = json.loads(decode_text(data))
    if value in ({}, []):
        return []
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return [Section(_pretty(item), section=f"[{i}]") for i, item in enumerate(value)]
    return [Section(_pretty(value))]


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


_PARSERS: dict[str, Callable[[bytes, Checkpoint], list[Section]]] = {
    "txt": _parse_txt,
    "md": _parse_md,
    "html": _parse_html,
    "pdf": _parse_pdf,
    "docx": _parse_docx,
    "csv": _parse_csv,
    "json": _parse_json,
}
