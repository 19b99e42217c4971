"""The loaders turn real files into text sections and chunks, judging files by content."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from loaders import (
    CONTENT_TYPES,
    Chunk,
    EmptyDocument,
    LoaderError,
    ParsedDocument,
    Section,
    UnparseableDocument,
    UnsupportedType,
    parse,
    sniff_type,
    split,
)
from loaders.sniff import decode_text

FORMATS = Path(__file__).resolve().parents[1] / "data" / "formats"
PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06"


def sample(name: str) -> bytes:
    return (FORMATS / name).read_bytes()


def full_text(document: ParsedDocument) -> str:
    return "\n".join(s.text for s in document.sections)


def zip_bytes(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


# --- each format ---------------------------------------------------------------------------


def test_txt_is_one_section_with_the_whole_text() -> None:
    doc = parse(sample("sample.txt"), "sample.txt")
    assert (doc.kind, doc.content_type) == ("txt", "text/plain")
    assert len(doc.sections) == 1
    assert doc.sections[0].text.startswith("Office hours")
    assert "answered within one business day" in doc.sections[0].text


def test_markdown_sections_follow_the_heading_path() -> None:
    doc = parse(sample("sample.md"), "sample.md")
    assert doc.kind == "md"
    by_section = {s.section: s.text for s in doc.sections}
    assert list(by_section) == [None, "Intro", "Intro > Setup", "Intro > Accounts", "Deployment"]
    assert by_section[None] == "Welcome to the onboarding guide."
    # Headings stay in the chunk text; a '#' inside a code fence is not a heading.
    assert by_section["Intro > Setup"].startswith("## Setup\n")
    assert "# this comment is not a heading" in by_section["Intro > Setup"]
    assert "VPN account" in by_section["Intro > Accounts"]
    assert "  \n" not in full_text(doc)


def test_html_drops_scripts_styles_nav_and_cuts_at_headings() -> None:
    doc = parse(sample("sample.html"), "sample.html")
    assert (doc.kind, doc.content_type) == ("html", "text/html")
    text = full_text(doc)
    assert "tracking code" not in text
    assert "font-family" not in text
    assert "Home" not in text  # the <nav>
    assert [s.section for s in doc.sections] == [
        "Travel Policy",
        "Travel Policy > Hotels",
        "Travel Policy > Meals",
    ]
    hotels = doc.sections[1].text
    assert "up to 150 EUR per night" in hotels
    assert "Seoul | 180000 KRW" in hotels  # one line per table row
    # Inline markup does not break the sentence.
    assert "Book flights at least 14 days ahead" in doc.sections[0].text
    assert "Dinner up to 40 EUR." in doc.sections[2].text


def test_pdf_gives_one_section_per_page_numbered_from_one() -> None:
    doc = parse(sample("sample.pdf"), "sample.pdf")
    assert (doc.kind, doc.content_type) == ("pdf", "application/pdf")
    assert [s.page for s in doc.sections] == [1, 2]
    assert "work from home up to three days per week" in doc.sections[0].text
    assert "Receipts must be submitted within 30 days" in doc.sections[1].text
    assert "Receipts" not in doc.sections[0].text


def test_docx_sections_follow_headings_and_include_tables() -> None:
    doc = parse(sample("sample.docx"), "sample.docx")
    assert doc.kind == "docx"
    assert doc.content_type == CONTENT_TYPES["docx"]
    assert [s.section for s in doc.sections] == [
        "Security Guidelines",
        "Security Guidelines > Passwords",
        "Incidents",
    ]
    assert "Lock your screen" in doc.sections[0].text
    passwords = doc.sections[1].text
    assert "at least 12 characters" in passwords
    assert "System | MFA required" in passwords
    assert "VPN | yes" in passwords
    assert "security@example.com" in doc.sections[2].text


def test_csv_rows_become_labelled_records_in_groups_of_twenty() -> None:
    doc = parse(sample("sample.csv"), "sample.csv")
    assert (doc.kind, doc.content_type) == ("csv", "text/csv")
    assert [s.section for s in doc.sections] == ["rows 1-20", "rows 21-25"]
    first = doc.sections[0].text
    assert first.startswith(
        "name: Alice Kim\ndepartment: Engineering\ncity: Seoul\nextension: 1000\n\n"
    )
    assert first.count("department: ") == 20
    assert doc.sections[1].text.count("department: ") == 5
    assert "extension: 1024" in doc.sections[1].text


def test_json_array_of_objects_is_one_section_per_element() -> None:
    doc = parse(sample("sample.json"), "sample.json")
    assert (doc.kind, doc.content_type) == ("json", "application/json")
    assert [s.section for s in doc.sections] == ["[0]", "[1]", "[2]"]
    assert '"question": "How do I reset my password?"' in doc.sections[0].text
    assert "입사 1년 후 15일이 부여됩니다." in doc.sections[2].text  # not \uXXXX-escaped


def test_json_object_is_one_pretty_printed_section() -> None:
    doc = parse(b'{"policy": {"days": 15}}', "leave.json")
    assert doc.sections == [Section('{\n  "policy": {\n    "days": 15\n  }\n}')]


# --- sniffing by content ---------------------------------------------------------------------


def test_a_pdf_renamed_txt_is_still_a_pdf() -> None:
    assert sniff_type(sample("sample.pdf"), "notes.txt", "text/plain") == "pdf"
    doc = parse(sample("sample.pdf"), "notes.txt", "text/plain")
    assert doc.kind == "pdf"
    assert [s.page for s in doc.sections] == [1, 2]


def test_a_text_file_named_pdf_is_read_as_text() -> None:
    data = sample("not-really.pdf")
    assert sniff_type(data, "not-really.pdf", "application/pdf") == "txt"
    doc = parse(data, "not-really.pdf", "application/pdf")
    assert doc.kind == "txt"
    assert "plain text note" in doc.sections[0].text


def test_a_png_named_txt_is_unsupported() -> None:
    with pytest.raises(UnsupportedType) as caught:
        parse(PNG_HEADER + bytes(64), "photo.txt", "text/plain")
    err = caught.value
    assert (err.code, err.status) == ("unsupported_media_type", 415)
    assert "photo.txt" in err.message
    assert "image/png" in err.message


@pytest.mark.parametrize(
    ("files", "what"),
    [
        ({"hello.txt": "hi"}, "a ZIP archive"),
        ({"xl/workbook.xml": "<workbook/>", "[Content_Types].xml": "<Types/>"}, "Excel"),
    ],
)
def test_a_zip_that_is_not_a_docx_is_unsupported(files: dict[str, str], what: str) -> None:
    with pytest.raises(UnsupportedType) as caught:
        parse(zip_bytes(files), "report.docx")
    assert what in caught.value.message
    assert caught.value.message.startswith("report.docx: ")


def test_other_binaries_are_unsupported() -> None:
    exe = b"MZ\x90\x00\x03" + bytes(200)
    with pytest.raises(UnsupportedType, match=re.escape("setup.txt")):
        sniff_type(exe, "setup.txt")
    with pytest.raises(UnsupportedType):
        sniff_type(b"plain start\x00\x01\x02 then binary", "blob.txt")


def test_euc_kr_text_is_decoded() -> None:
    data = sample("korean-euckr.txt")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # the sample really is not UTF-8
    doc = parse(data, "korean-euckr.txt")
    assert doc.kind == "txt"
    text = doc.sections[0].text
    assert text.startswith("연차 휴가 규정")
    assert "연차 휴가는 입사 1년 후 15일이 부여됩니다." in text


def test_decode_text_handles_boms_and_newlines() -> None:
    assert decode_text("hello\r\nwörld".encode("utf-16")) == "hello\nwörld"
    assert decode_text(b"\xef\xbb\xbfhi\rthere") == "hi\nthere"
    with pytest.raises(ValueError):
        decode_text(b"abc\x00def")


@pytest.mark.parametrize(
    ("data", "filename", "declared", "kind"),
    [
        (b'{"a": [1, 2]}', "data.txt", None, "json"),
        (b"[1, 2, 3]", "numbers", None, "json"),
        (b"{not json", "broken.json", None, "txt"),
        (b"<!DOCTYPE html><title>x</title>", "page", None, "html"),
        (b"<p>Hello <b>world</b></p><p>again</p>", "fragment.txt", None, "html"),
        (b"# Title\n\nBody", "notes.md", None, "md"),
        (b"# Title\n\nBody", "upload", "text/markdown; charset=utf-8", "md"),
        (b"# Title\n\nBody", "notes.txt", None, "txt"),
        (b'<p align="center"><img src="logo.png"></p>\n\n# Readme\n', "README.md", None, "md"),
        (b"a,b,c\n1,2,3\n4,5,6\n", "table.csv", None, "csv"),
        (b"a;b\n1;2\n", "upload", "text/csv", "csv"),
        (b"a,b,c\n1,2,3\n", "table.txt", None, "txt"),
        (b"Hello, world. It is, I think, prose.\nNot a table at all\n", "p.csv", None, "txt"),
    ],
)
def test_sniff_decides_by_content_then_name(
    data: bytes, filename: str, declared: str | None, kind: str
) -> None:
    assert sniff_type(data, filename, declared) == kind


def test_content_types_cover_every_kind() -> None:
    assert set(CONTENT_TYPES) == {"txt", "md", "html", "pdf", "docx", "csv", "json"}
    assert CONTENT_TYPES["md"] == "text/markdown"


# --- failures ----------------------------------------------------------------------------------


def test_zero_bytes_is_an_empty_document() -> None:
    with pytest.raises(EmptyDocument) as caught:
        parse(b"", "empty.txt")
    assert (caught.value.code, caught.value.status) == ("empty_document", 422)
    assert "empty.txt" in caught.value.message


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"   \n\t\n", "blank.txt"),
        (b"<html><head><title>t</title></head><body><script>x()</script></body></html>", "a.html"),
        (b"name,city\n", "header-only.csv"),
        (b"[]", "empty.json"),
    ],
)
def test_documents_without_text_are_empty(data: bytes, filename: str) -> None:
    with pytest.raises(EmptyDocument, match=re.escape(filename)):
        parse(data, filename)


@pytest.mark.parametrize("keep", [9, 120, 600])
def test_a_truncated_pdf_is_unparseable(keep: int) -> None:
    data = sample("sample.pdf")[:keep]
    assert data.startswith(b"%PDF-")
    with pytest.raises(UnparseableDocument) as caught:
        parse(data, "cut.pdf")
    err = caught.value
    assert (err.code, err.status) == ("unparseable_document", 422)
    assert err.message.startswith("cut.pdf: cannot read it as pdf")
    assert err.__cause__ is not None  # the library's reason is kept for the logs


def test_a_password_protected_pdf_is_unparseable() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(sample("sample.pdf"))))
    writer.encrypt("secret", algorithm="RC4-128")
    locked = io.BytesIO()
    writer.write(locked)
    with pytest.raises(UnparseableDocument, match="password"):
        parse(locked.getvalue(), "locked.pdf")


def test_a_damaged_docx_is_unparseable() -> None:
    with pytest.raises(UnparseableDocument, match=re.escape("broken.docx")):
        parse(sample("sample.docx")[:3000], "broken.docx")


def test_loader_errors_share_a_base_with_code_status_and_message() -> None:
    for cls in (UnsupportedType, EmptyDocument, UnparseableDocument):
        err = cls("a.bin", "why")
        assert isinstance(err, LoaderError)
        assert err.message == "a.bin: why" == str(err)
    assert UnsupportedType.status == 415
    assert EmptyDocument.code == "empty_document"
    assert UnparseableDocument.code == "unparseable_document"


# --- splitting ---------------------------------------------------------------------------------


def test_split_keeps_page_and_section_and_numbers_chunks_over_the_document() -> None:
    doc = ParsedDocument(
        kind="pdf",
        content_type="application/pdf",
        sections=[
            Section("alpha " * 60, page=1, section="A"),
            Section("beta " * 60, page=2, section="B"),
        ],
    )
    chunks = split(doc, chunk_size=100, chunk_overlap=20)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(len(c.text) <= 100 for c in chunks)
    first_page = [c for c in chunks if c.page == 1]
    second_page = [c for c in chunks if c.page == 2]
    assert len(first_page) >= 3
    assert len(second_page) >= 3
    assert all("alpha" in c.text and "beta" not in c.text for c in first_page)
    assert all(c.section == "A" for c in first_page)
    assert all(c.section == "B" and "alpha" not in c.text for c in second_page)
    assert chunks[0] == Chunk(chunks[0].text, 0, 1, "A")


def test_split_a_real_pdf_cites_its_pages() -> None:
    chunks = split(parse(sample("sample.pdf"), "sample.pdf"), chunk_size=80, chunk_overlap=10)
    pages = {c.page for c in chunks if "Taxi rides" in c.text}
    assert pages == {2}
    assert {c.page for c in chunks} == {1, 2}


def test_split_overlaps_neighbouring_chunks() -> None:
    words = " ".join(f"w{i:03d}" for i in range(200))
    doc = ParsedDocument("txt", "text/plain", [Section(words)])
    chunks = split(doc, chunk_size=100, chunk_overlap=30)
    assert chunks[0].text.split()[-1] in chunks[1].text.split()
    assert chunks[-1].text.endswith("w199")


def test_split_skips_whitespace_only_text() -> None:
    doc = ParsedDocument("txt", "text/plain", [Section(" \n\n "), Section("real text")])
    assert split(doc) == [Chunk("real text", 0, None, None)]


@pytest.mark.parametrize(("size", "overlap"), [(100, 100), (100, 150), (100, -1), (0, 0)])
def test_split_rejects_bad_sizes(size: int, overlap: int) -> None:
    doc = ParsedDocument("txt", "text/plain", [Section("text")])
    with pytest.raises(ValueError):
        split(doc, chunk_size=size, chunk_overlap=overlap)


# --- packaging ---------------------------------------------------------------------------------


def test_importing_loaders_does_not_load_the_heavy_parsers() -> None:
    heavy = ["pypdf", "docx", "bs4", "langchain_text_splitters"]
    code = f"import sys, loaders; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "[]"
