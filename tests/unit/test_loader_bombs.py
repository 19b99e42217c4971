"""Decompression bombs: small archives that expand past the caps are refused (413)."""

from __future__ import annotations

import io
import zipfile

import docx
import pytest

from loaders import DocumentTooLarge, parse, sniff_type
from loaders import parsers as parsers_module
from loaders import sniff as sniff_module


def docx_bytes(text: str = "hello") -> bytes:
    """A real .docx with one paragraph."""
    document = docx.Document()
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def docx_bomb(expanded_bytes: int) -> bytes:
    """A .docx whose document.xml carries ``expanded_bytes`` of highly compressible text."""
    source = zipfile.ZipFile(io.BytesIO(docx_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "word/document.xml":
                filler = b"<w:p><w:r><w:t>" + b"a" * expanded_bytes + b"</w:t></w:r></w:p>"
                data = data.replace(b"<w:body>", b"<w:body>" + filler, 1)
            archive.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def test_docx_bomb_is_refused_before_parsing() -> None:
    bomb = docx_bomb(80 * 1024 * 1024)
    assert len(bomb) < 1024 * 1024  # under 1 MB on the wire
    with pytest.raises(DocumentTooLarge) as caught:
        sniff_type(bomb, "bomb.docx")
    error = caught.value
    assert (error.status, error.code) == (413, "document_too_large")
    assert "bomb.docx" in error.message
    assert str(sniff_module.MAX_DECOMPRESSED_BYTES) in error.message
    with pytest.raises(DocumentTooLarge):
        parse(bomb, "bomb.docx")


def test_ordinary_docx_still_parses() -> None:
    assert "hello" in parse(docx_bytes(), "ok.docx").sections[0].text


def test_too_many_archive_members(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sniff_module, "MAX_ARCHIVE_MEMBERS", 3)
    with pytest.raises(DocumentTooLarge, match="members"):
        sniff_type(docx_bytes(), "many.docx")


def test_extracted_text_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsers_module, "MAX_TEXT_CHARS", 1000)
    with pytest.raises(DocumentTooLarge) as caught:
        parse(b"word " * 1000, "long.txt")
    assert "long.txt" in caught.value.message and "1000 characters" in caught.value.message
    with pytest.raises(DocumentTooLarge) as in_docx:
        parse(docx_bytes("x" * 2000), "long.docx")
    assert "long.docx" in in_docx.value.message


def _rows(n: int) -> bytes:
    return ("name,team\n" + "".join(f"person {i},team {i % 7}\n" for i in range(n))).encode()


def test_a_stopped_parse_ends_at_its_next_checkpoint() -> None:
    """``stop`` is polled while parsing: once it says so, the parse ends (no document error)."""
    from loaders import ParseCancelled, parse

    calls = 0

    def stop_after_three() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    with pytest.raises(ParseCancelled):
        parse(_rows(10_000), "people.csv", stop=stop_after_three)  # 500 sections of 20 rows
    assert calls == 4  # it stopped at the first checkpoint after the request, not at the end
    assert len(parse(_rows(100), "people.csv", stop=lambda: False).sections) == 5


async def test_cancelling_an_ingestion_stops_its_parsing_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parse runs in a thread, which task cancellation does not reach: the stop flag does."""
    import asyncio
    import threading
    from types import SimpleNamespace
    from typing import Any

    from knowledge import ingest
    from loaders import ParseCancelled

    started, ended = threading.Event(), threading.Event()
    seen: list[str] = []
    real_parse = ingest.parse

    def watched_parse(*args: Any, **kwargs: Any) -> Any:
        stop = kwargs["stop"]

        def polled() -> bool:
            started.set()
            return bool(stop())

        try:
            return real_parse(*args, **{**kwargs, "stop": polled})
        except ParseCancelled:
            seen.append("stopped")
            raise
        finally:
            ended.set()

    monkeypatch.setattr(ingest, "parse", watched_parse)
    document: Any = SimpleNamespace(id="d", filename="people.csv", content_type="text/csv")
    task = asyncio.create_task(
        ingest.ingest_document(
            document,
            SimpleNamespace(),  # type: ignore[arg-type]
            _rows(400_000),
            sessions=None,  # type: ignore[arg-type]
            vectors=None,  # type: ignore[arg-type]
            targets=[],
            batch_size=1,
        )
    )
    await asyncio.to_thread(started.wait, 30)
    task.cancel()  # a user's cancel of the document
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(ended.wait, 30)
    assert seen == ["stopped"]  # the thread stopped parsing instead of running to the end
