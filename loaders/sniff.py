"""What kind of document a file is, decided by its bytes before its name.

Uploads lie: a ``.pdf`` that is really text, a PNG renamed ``.txt``, a Korean ``.txt``
saved in EUC-KR. So the content decides first (PDF and ZIP magic, "does it decode as
text", "does it parse as JSON", "does it look like HTML"); the file name and the declared
MIME type only choose between the plain-text kinds (markdown, CSV, text) that content
alone cannot tell apart.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
import zipfile
from pathlib import PurePath

from loaders.errors import DocumentTooLarge, EmptyDocument, UnparseableDocument, UnsupportedType

MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
"""Largest total uncompressed size of an archive-based document's members. ``zipfile``
never reads a member past its declared size, so the declared sizes bound what parsers
read."""
MAX_ARCHIVE_MEMBERS = 5_000

CONTENT_TYPES: dict[str, str] = {
    "txt": "text/plain",
    "md": "text/markdown",
    "html": "text/html",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "csv": "text/csv",
    "json": "application/json",
}

_SUPPORTED = ", ".join(CONTENT_TYPES)
_SAMPLE = 8192

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_DOCX_PART = "word/document.xml"
# Other OOXML/ODF packages, named so the user knows what they uploaded instead.
_ZIP_KINDS = {
    "xl/workbook.xml": "an Excel workbook",
    "ppt/presentation.xml": "a PowerPoint presentation",
    "mimetype": "an OpenDocument file",
}

# UTF-32 before UTF-16: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v")

_HINTS_BY_SUFFIX = {".md": "md", ".markdown": "md", ".csv": "csv", ".tsv": "csv"}
_HINTS_BY_SUFFIX |= {".html": "html", ".htm": "html", ".xhtml": "html"}
_HINTS_BY_MIME = {
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/csv": "csv",
    "application/csv": "csv",
    "text/tab-separated-values": "csv",
    "text/html": "html",
    "application/xhtml+xml": "html",
}

# A document that *is* HTML: doctype or <html>, after an optional XML prolog and comments.
_HTML_START = re.compile(
    r"\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*(?:<!doctype\s+html|<html[\s>])",
    re.IGNORECASE | re.DOTALL,
)
# Tags that mark a fragment of HTML (as opposed to text that mentions one tag).
_HTML_TAG = re.compile(
    r"</?(?:html|head|body|title|meta|link|div|p|span|a|table|tr|td|th|ul|ol|li|h[1-6]"
    r"|section|article|main|header|footer|nav|br|img|script|style|form)\b[^<>]*>",
    re.IGNORECASE,
)


def sniff_type(data: bytes, filename: str, declared: str | None = None) -> str:
    """The canonical kind of ``data`` (a key of ``CONTENT_TYPES``), content first.

    Raises:
        EmptyDocument: ``data`` is zero bytes.
        UnsupportedType: binary content that is neither PDF nor DOCX.
        UnparseableDocument: a broken ZIP that its name says is a DOCX.
    """
    if not data:
        raise EmptyDocument(filename, "the file is empty")
    if data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(_ZIP_MAGIC):
        return _sniff_zip(data, filename, declared)
    mime = _binary_mime(data)
    if mime is not None:
        raise UnsupportedType(filename, f"{mime} files are not supported (readable: {_SUPPORTED})")
    try:
        text = decode_text(data)
    except ValueError as exc:
        raise UnsupportedType(
            filename, f"binary content is not supported ({exc}; readable: {_SUPPORTED})"
        ) from exc
    return _sniff_text(text, _hint(filename, declared))


def decode_text(data: bytes) -> str:
    """``data`` as text with Unix newlines: BOM, then UTF-8, then a detected charset.

    Non-UTF-8 files are common in the wild (EUC-KR / CP949 from Korean Windows), so the
    charset is detected by charset-normalizer rather than assumed.

    Raises:
        ValueError: the bytes are binary (NUL bytes, control characters) or no charset fits.
    """
    text = _decode(data)
    sample = text[:_SAMPLE]
    controls = sum(1 for ch in sample if ch < " " and ch not in _ALLOWED_CONTROLS)
    if controls > len(sample) * 0.05:
        raise ValueError("too many control characters for text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def csv_dialect(text: str) -> type[csv.Dialect] | None:
    """The CSV dialect of ``text``, or None when it is not a table of at least two columns.

    The delimiter is sniffed from a sample; the sample must then read as rows of a steady
    width, so prose with commas in a ``.csv`` file falls back to plain text.
    """
    sample = text[:_SAMPLE]
    if len(text) > _SAMPLE and "\n" in sample:
        sample = sample[: sample.rfind("\n") + 1]
    try:
        dialect: type[csv.Dialect] = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        reader = csv.reader(io.StringIO(sample), dialect)
        rows = [row for row in itertools.islice(reader, 50) if any(c.strip() for c in row)]
    except csv.Error:
        return None
    if not rows or len(rows[0]) < 2:
        return None
    steady = sum(len(row) == len(rows[0]) for row in rows)
    return dialect if steady >= 0.8 * len(rows) else None


def _decode(data: bytes) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding)
    if b"\x00" in data:
        raise ValueError("NUL bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise ValueError("no text encoding fits")
    return str(best)


def _hint(filename: str, declared: str | None) -> str | None:
    """What the name or declared MIME type claims, among md/csv/html (never trusted alone)."""
    mime = (declared or "").split(";")[0].strip().lower()
    if mime in _HINTS_BY_MIME:
        return _HINTS_BY_MIME[mime]
    return _HINTS_BY_SUFFIX.get(PurePath(filename).suffix.lower())


def _sniff_zip(data: bytes, filename: str, declared: str | None) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        claimed = (declared or "").split(";")[0].strip().lower() == CONTENT_TYPES["docx"]
        if claimed or PurePath(filename).suffix.lower() == ".docx":
            raise UnparseableDocument(filename, f"the DOCX file is damaged ({exc})") from exc
        raise UnsupportedType(filename, f"a damaged ZIP archive is not supported ({exc})") from exc
    names = {member.filename for member in members}
    if _DOCX_PART in names:
        check_archive_size(members, filename)
        return "docx"
    what = next((kind for part, kind in _ZIP_KINDS.items() if part in names), "a ZIP archive")
    raise UnsupportedType(
        filename, f"{what} is not supported (of ZIP-based formats only .docx is read)"
    )


def check_archive_size(members: list[zipfile.ZipInfo], filename: str) -> None:
    """Refuse an archive with too many members or too many bytes once decompressed."""
    if len(members) > MAX_ARCHIVE_MEMBERS:
        raise DocumentTooLarge(
            filename, f"the archive has more than {MAX_ARCHIVE_MEMBERS} members (the cap)"
        )
    expanded = sum(member.file_size for member in members)
    if expanded > MAX_DECOMPRESSED_BYTES:
        raise DocumentTooLarge(
            filename,
            f"it expands to {expanded} bytes, more than the {MAX_DECOMPRESSED_BYTES}-byte "
            "cap on decompressed size",
        )


def _binary_mime(data: bytes) -> str | None:
    """The MIME type of a recognised binary format, only asked of bytes that are not text.

    Magic numbers such as ``BZh`` or ``%!`` are also plausible starts of a text file,
    so they are only believed when the bytes hold a NUL or are not UTF-8.
    """
    sample = data[:_SAMPLE]
    if b"\x00" not in sample:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        except UnicodeDecodeError:
            pass
        else:
            return None
    import filetype

    mime: str | None = filetype.guess_mime(sample)
    return mime


def _sniff_text(text: str, hint: str | None) -> str:
    stripped = text.lstrip()
    if stripped[:1] in ("{", "[") and _is_json(stripped):
        return "json"
    head = text[:4096]
    if _HTML_START.match(head):
        return "html"
    tags = len(_HTML_TAG.findall(head[:2048]))
    # Markdown may embed HTML (a centred logo on top of a README): the name wins there.
    if hint != "md" and (tags >= 2 or (hint == "html" and tags >= 1)):
        return "html"
    if hint == "md":
        return "md"
    if hint == "csv" and csv_dialect(text) is not None:
        return "csv"
    return "txt"


def _is_json(text: str) -> bool:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict | list)
