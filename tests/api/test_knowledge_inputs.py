"""Upload inputs a hostile but ordinary client sends (issue 17): paths, empty fields.

Every bad input answers a 4xx naming the field; a filename is kept as its base name only,
in the document and in the citations of its chunks.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.knowledge import search, upload
from tests.support.service import RunningService, ServiceFactory

EMBEDDING = {"embedding_model": "text-embedding-3-small"}
TEXT = b"Travel policy. Trains are booked in second class; flights need approval."


@pytest.fixture
def kb(db_services: ServiceFactory) -> RunningService:
    """The service on SQLite and PostgreSQL (tables emptied per test)."""
    return db_services.start(**EMBEDDING)


def _raw_upload(kb: RunningService, filename: str) -> httpx.Response:
    """Upload with ``filename`` written into the part's header byte for byte.

    httpx would percent-encode control characters; a hostile client does not.
    """
    boundary = "ahc-test-boundary"
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="files"; filename="{filename}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + TEXT
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {**kb.headers(), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    return httpx.post(f"{kb.api}/knowledge/documents", content=body, headers=headers, timeout=60)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../etc/x.txt", "x.txt"),
        ("/etc/passwd.txt", "passwd.txt"),
        ("..\\..\\boot.ini.txt", "boot.ini.txt"),
        ("notes\x07\x1b[31m\x7f.txt", "notes[31m.txt"),
        ("..", "upload"),
        ("\x1b\x07", "upload"),
    ],
)
def test_filename_keeps_only_its_base_name(kb: RunningService, sent: str, kept: str) -> None:
    response = _raw_upload(kb, sent)
    assert response.status_code == 201, response.text
    document = response.json()["documents"][0]
    assert document["filename"] == kept
    listed = httpx.get(f"{kb.api}/knowledge/documents", headers=kb.headers()).json()
    assert [d["filename"] for d in listed["data"]] == [kept]
    hits = search(kb, "trains second class", mode="keyword").json()["results"]
    assert hits and {h["metadata"]["filename"] for h in hits} == {kept}


def test_empty_collection_field_is_refused(kb: RunningService) -> None:
    response = upload(kb, [("a.txt", TEXT, "text/plain")], collection="")
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "collection" in error["message"]
    listed = httpx.get(f"{kb.api}/knowledge/documents", headers=kb.headers()).json()
    assert listed["count"] == 0


@pytest.mark.parametrize("field", ["files", "file"])
def test_empty_filename_is_a_clear_4xx(kb: RunningService, field: str) -> None:
    response = upload(kb, [("", TEXT, "text/plain")], field=field)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert field in error["message"] and "UploadFile" not in error["message"]
