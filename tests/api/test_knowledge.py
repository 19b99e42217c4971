"""The knowledge base over HTTP: upload, formats, duplicates, bad files, search, isolation.

Embeddings go through the real ``langchain-openai`` client to the fake OpenAI server
(bag-of-words vectors), so these tests are fast; the local embedder has its own tests.
"""

from __future__ import annotations

import time

import chromadb
import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.support.knowledge import FORMATS, search, upload
from tests.support.service import RunningService, ServiceFactory

EMBEDDING = {"embedding_model": "text-embedding-3-small"}
POLICY = (
    "Expense policy. Employees submit receipts in Concur within 30 days. "
    "Meals are reimbursed up to 50 dollars per day while travelling."
)
VPN = "Security policy. The VPN client is GlobalProtect; passwords rotate every 90 days."


@pytest.fixture
def kb(db_services: ServiceFactory) -> RunningService:
    """The service (on PostgreSQL its tables start empty: see ``db_services``)."""
    return db_services.start(**EMBEDDING)


def test_upload_every_format_and_read_it_back(kb: RunningService) -> None:
    names = ["sample.txt", "sample.md", "sample.html", "sample.pdf", "sample.docx"]
    names += ["sample.csv", "sample.json"]
    response = upload(kb, [(n, (FORMATS / n).read_bytes()) for n in names])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["errors"] == []
    docs = {d["filename"]: d for d in body["documents"]}
    assert set(docs) == set(names)
    for doc in docs.values():
        assert doc["status"] == "ready" and doc["chunks"] >= 1 and not doc["duplicate"]
        assert len(doc["sha256"]) == 64 and doc["size_bytes"] > 0
        assert set(doc) >= {"id", "content_type", "metadata", "created_at"}
    assert docs["sample.pdf"]["content_type"] == "application/pdf"
    assert docs["sample.docx"]["content_type"].endswith("wordprocessingml.document")
    one = httpx.get(f"{kb.api}/knowledge/documents/{docs['sample.md']['id']}", headers=kb.headers())
    assert one.status_code == 200 and one.json()["filename"] == "sample.md"
    listing = httpx.get(f"{kb.api}/knowledge/documents?limit=3", headers=kb.headers()).json()
    assert listing["count"] == 7 and len(listing["data"]) == 3


def test_single_file_field_metadata_and_pages(kb: RunningService) -> None:
    response = upload(
        kb,
        [("sample.pdf", (FORMATS / "sample.pdf").read_bytes())],
        field="file",
        metadata={"team": "hr", "year": 2026},
    )
    assert response.status_code == 201, response.text
    doc = response.json()["documents"][0]
    assert doc["metadata"] == {"team": "hr", "year": 2026}
    hits = search(kb, "remote work receipts policy", k=10, mode="keyword").json()["results"]
    assert {h["metadata"]["page"] for h in hits} == {1, 2}
    assert all(h["metadata"]["team"] == "hr" and h["document_id"] == doc["id"] for h in hits)


def test_duplicate_content_is_not_ingested_twice(kb: RunningService) -> None:
    first = upload(kb, [("policy.txt", POLICY.encode())]).json()["documents"][0]
    again = upload(kb, [("copy-of-policy.txt", POLICY.encode())])
    assert again.status_code == 201
    dup = again.json()["documents"][0]
    assert dup["duplicate"] is True and dup["id"] == first["id"]
    listing = httpx.get(f"{kb.api}/knowledge/documents", headers=kb.headers()).json()
    assert listing["count"] == 1
    # another collection is another place: the same content is ingested there
    other = upload(kb, [("policy.txt", POLICY.encode())], collection="finance").json()
    assert other["documents"][0]["duplicate"] is False


def test_bad_files_are_refused_and_good_ones_kept(services: ServiceFactory) -> None:
    kb = services.start(knowledge_max_file_bytes=2000, **EMBEDDING)
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    broken_pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog"
    cases = {
        "image.png": (png, 415, "unsupported_media_type"),
        "big.txt": (b"word " * 1000, 413, "file_too_large"),
        "empty.txt": (b"", 422, "empty_document"),
        "broken.pdf": (broken_pdf, 422, "unparseable_document"),
    }
    for name, (data, status, code) in cases.items():
        response = upload(kb, [(name, data)])
        assert response.status_code == status, (name, response.text)
        body = response.json()
        assert body["error"]["code"] == code and name in body["error"]["message"]
        assert body["errors"][0]["filename"] == name
    mixed = upload(kb, [("good.txt", POLICY.encode()), ("image.png", png)])
    assert mixed.status_code == 201
    body = mixed.json()
    assert [d["filename"] for d in body["documents"]] == ["good.txt"]
    assert [(e["filename"], e["status"]) for e in body["errors"]] == [("image.png", 415)]
    listing = httpx.get(f"{kb.api}/knowledge/documents", headers=kb.headers()).json()
    assert [d["filename"] for d in listing["data"]] == ["good.txt"]  # no half records


def test_no_files_and_bad_metadata_are_422(kb: RunningService) -> None:
    empty = httpx.post(f"{kb.api}/knowledge/documents", headers=kb.headers(), data={"x": "1"})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "no_files"
    nested = upload(kb, [("a.txt", b"hello world")], metadata={"a": {"b": 1}})
    assert nested.status_code == 422 and nested.json()["error"]["code"] == "invalid_metadata"
    reserved = upload(kb, [("a.txt", b"hello world")], metadata={"document_id": "x"})
    assert reserved.status_code == 422


def test_search_modes_find_the_right_document(kb: RunningService) -> None:
    upload(kb, [("expenses.txt", POLICY.encode()), ("security.txt", VPN.encode())])
    for mode in ("vector", "keyword", "hybrid"):
        response = search(kb, "how often do passwords rotate", mode=mode, k=2)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert results[0]["metadata"]["filename"] == "security.txt", mode
        assert set(results[0]) >= {"document_id", "chunk_id", "text", "score", "metadata"}
    hybrid = search(kb, "receipts Concur", k=1).json()["results"][0]
    assert hybrid["metadata"]["filename"] == "expenses.txt"
    assert hybrid["keyword_score"] > 0 and hybrid["vector_score"] is not None
    assert search(kb, "receipts", mmr=True, k=2).status_code == 200


def test_metadata_filters_and_bad_filters(kb: RunningService) -> None:
    upload(kb, [("expenses.txt", POLICY.encode())], metadata={"team": "finance"})
    upload(kb, [("security.txt", VPN.encode())], metadata={"team": "it"})
    for mode in ("vector", "keyword", "hybrid"):
        found = search(kb, "policy", filter={"team": "it"}, mode=mode, k=5).json()["results"]
        assert [h["metadata"]["filename"] for h in found] == ["security.txt"], mode
    both = {"$or": [{"team": {"$eq": "it"}}, {"team": {"$in": ["finance"]}}]}
    assert len(search(kb, "policy", filter=both, k=5).json()["results"]) == 2
    for bad in ({"$bogus": 1}, {"team": {"$like": "x"}}, {"a": 1, "b": 2}, {"$and": [{"a": 1}]}):
        response = search(kb, "policy", filter=bad)
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "invalid_filter"
    listed = httpx.get(
        f"{kb.api}/knowledge/documents", params={"metadata": '{"team": "it"}'}, headers=kb.headers()
    ).json()
    assert [d["filename"] for d in listed["data"]] == ["security.txt"]


def test_delete_removes_chunks_everywhere(kb: RunningService) -> None:
    doc = upload(kb, [("security.txt", VPN.encode())]).json()["documents"][0]
    assert search(kb, "GlobalProtect", mode="keyword").json()["results"]
    other_user = httpx.delete(
        f"{kb.api}/knowledge/documents/{doc['id']}", headers=kb.headers(user="mallory")
    )
    assert other_user.status_code == 403
    deleted = httpx.delete(f"{kb.api}/knowledge/documents/{doc['id']}", headers=kb.headers())
    assert deleted.status_code == 204
    for mode in ("vector", "keyword", "hybrid"):
        assert search(kb, "GlobalProtect VPN", mode=mode).json()["results"] == [], mode
    gone = httpx.get(f"{kb.api}/knowledge/documents/{doc['id']}", headers=kb.headers())
    assert gone.status_code == 404
    again = upload(kb, [("security.txt", VPN.encode())]).json()["documents"][0]
    assert again["duplicate"] is False  # deleted content can come back


def test_orgs_never_see_each_other(kb: RunningService) -> None:
    doc = upload(kb, [("security.txt", VPN.encode())], org="org-a").json()["documents"][0]
    for mode in ("vector", "keyword", "hybrid"):
        assert search(kb, "GlobalProtect", org="org-b", mode=mode).json()["results"] == []
    url = f"{kb.api}/knowledge/documents/{doc['id']}"
    assert httpx.get(url, headers=kb.headers("org-b")).status_code == 404
    assert httpx.delete(url, headers=kb.headers("org-b", role="admin")).status_code == 404
    listing = httpx.get(f"{kb.api}/knowledge/documents", headers=kb.headers("org-b")).json()
    assert listing == {"data": [], "count": 0}
    missing = search(kb, "x", org="org-b", collection="finance")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "collection_not_found"


def test_embedder_failing_mid_document_leaves_nothing(
    services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    kb = services.start(embedding_batch_size=2, upstream_max_retries=0, **EMBEDDING)
    text = "\n\n".join(f"Paragraph {i}. " + "lorem ipsum dolor " * 30 for i in range(8))
    fake_openai.delay_next(0)  # the first batch goes through...
    fake_openai.fail_next(status=400)  # ...then the embedder breaks (400: no retry)
    response = upload(kb, [("long.txt", text.encode())])
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "embedding_failed"
    embedding_calls = [r for r in fake_openai.requests if r.path.endswith("/embeddings")]
    assert len(embedding_calls) >= 2  # it failed half-way, not before starting
    for mode in ("vector", "keyword"):
        assert search(kb, "lorem ipsum", mode=mode).json()["results"] == []
    listing = httpx.get(f"{kb.api}/knowledge/documents", headers=kb.headers()).json()
    assert listing["count"] == 0


def test_large_files_ingest_in_the_background(services: ServiceFactory) -> None:
    kb = services.start(knowledge_inline_max_bytes=100, **EMBEDDING)
    response = upload(kb, [("security.txt", VPN.encode())])
    assert response.status_code == 201
    doc = response.json()["documents"][0]
    assert doc["status"] in ("processing", "ready")
    url = f"{kb.api}/knowledge/documents/{doc['id']}"
    deadline = time.monotonic() + 20
    while httpx.get(url, headers=kb.headers()).json()["status"] == "processing":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert httpx.get(url, headers=kb.headers()).json()["status"] == "ready"


def test_reindex_replaces_chunks(kb: RunningService) -> None:
    doc = upload(kb, [("security.txt", VPN.encode())]).json()["documents"][0]
    before = search(kb, "GlobalProtect", mode="keyword").json()["results"]
    response = httpx.post(f"{kb.api}/knowledge/documents/{doc['id']}/reindex", headers=kb.headers())
    assert response.status_code == 202
    url = f"{kb.api}/knowledge/documents/{doc['id']}"
    deadline = time.monotonic() + 20
    while httpx.get(url, headers=kb.headers()).json()["status"] != "ready":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    after = search(kb, "GlobalProtect", mode="keyword").json()["results"]
    assert len(after) == len(before) == 1 and after[0]["chunk_id"] != before[0]["chunk_id"]
    vector = search(kb, "GlobalProtect", mode="vector", k=10).json()["results"]
    assert [h["chunk_id"] for h in vector] == [after[0]["chunk_id"]]  # old vectors gone


def test_collections_with_their_own_distance_and_chunking(kb: RunningService) -> None:
    created = httpx.post(
        f"{kb.api}/knowledge/collections",
        headers=kb.headers(),
        json={"name": "wiki", "distance": "l2", "chunk_size": 200, "chunk_overlap": 20},
    )
    assert created.status_code == 201, created.text
    assert created.json()["distance"] == "l2" and created.json()["embedding_dim"] == 1536
    again = httpx.post(
        f"{kb.api}/knowledge/collections", headers=kb.headers(), json={"name": "wiki"}
    )
    assert again.status_code == 409
    text = " ".join(f"sentence number {i} about the wiki." for i in range(40))
    doc = upload(kb, [("wiki.txt", text.encode())], collection="wiki").json()["documents"][0]
    assert doc["chunks"] > 5 and doc["collection"] == "wiki"
    hits = search(kb, "sentence number 7", collection="wiki", mode="vector").json()["results"]
    assert hits and 0 < hits[0]["score"] <= 1
    names = httpx.get(f"{kb.api}/knowledge/collections", headers=kb.headers()).json()["data"]
    assert {c["name"] for c in names} == {"wiki"}
    bad = httpx.post(
        f"{kb.api}/knowledge/collections",
        headers=kb.headers(),
        json={"name": "x", "chunk_size": 100, "chunk_overlap": 100},
    )
    assert bad.status_code == 422


def test_embedding_calls_are_accounted(kb: RunningService) -> None:
    upload(kb, [("security.txt", VPN.encode())])
    search(kb, "GlobalProtect", mode="vector")
    deadline = time.monotonic() + 10
    while True:
        usage = httpx.get(f"{kb.api}/usage?group_by=route", headers=kb.headers(role="admin")).json()
        routes = {g["key"]: g for g in usage["groups"]}
        if {"knowledge.ingest", "knowledge.search"} <= set(routes) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert routes["knowledge.ingest"]["prompt_tokens"] > 0
    assert routes["knowledge.search"]["requests"] == 1
    model = httpx.get(f"{kb.api}/usage?group_by=model", headers=kb.headers(role="admin")).json()
    assert "text-embedding-3-small" in {g["key"] for g in model["groups"]}


def test_chroma_server_backend(services: ServiceFactory, chroma_server: str) -> None:
    kb = services.start(chroma_url=chroma_server, **EMBEDDING)
    assert httpx.get(f"{kb.url}/readyz").status_code == 200
    doc = upload(kb, [("security.txt", VPN.encode())], org="org-srv").json()["documents"][0]
    hits = search(kb, "GlobalProtect VPN", org="org-srv", mode="vector").json()["results"]
    assert [h["document_id"] for h in hits] == [doc["id"]]
    assert search(kb, "GlobalProtect VPN", org="org-other").json()["results"] == []
    collections = "api/v2/tenants/default_tenant/databases/default_database/collections"
    names = httpx.get(f"{chroma_server}/{collections}").json()
    assert any(c["name"].startswith("ahc-") for c in names)
    deleted = httpx.delete(
        f"{kb.api}/knowledge/documents/{doc['id']}", headers=kb.headers("org-srv")
    )
    assert deleted.status_code == 204
    assert search(kb, "GlobalProtect", org="org-srv", mode="vector").json()["results"] == []


def wait_for(check, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_reembed_swaps_the_collection_without_downtime(kb: RunningService) -> None:
    upload(kb, [("security.txt", VPN.encode()), ("expenses.txt", POLICY.encode())])
    assert search(kb, "GlobalProtect", mode="vector").status_code == 200
    searches = kb.app.state.services.knowledge._collections._cache
    before = searches.get("org-a", "default")  # the record that search cached
    member = httpx.post(
        f"{kb.api}/knowledge/reembed", headers=kb.headers(), json={"embedding_model": "local-use"}
    )
    assert member.status_code == 403
    started = httpx.post(
        f"{kb.api}/knowledge/reembed",
        headers=kb.headers(role="admin"),
        json={"embedding_model": "local-use"},
    )
    assert started.status_code == 202, started.text
    assert started.json()["reembedding_to"] == "local-use"
    assert search(kb, "GlobalProtect", mode="vector").status_code == 200  # still searchable

    def swapped() -> bool:
        rows = httpx.get(f"{kb.api}/knowledge/collections", headers=kb.headers()).json()["data"]
        return rows[0]["embedding_model"] == "local-use" and rows[0]["reembedding_to"] is None

    wait_for(swapped, 120)
    rows = httpx.get(f"{kb.api}/knowledge/collections", headers=kb.headers()).json()["data"]
    assert rows[0]["embedding_dim"] == 512
    hits = search(kb, "Which VPN client do we use?", mode="vector", k=1).json()["results"]
    assert hits[0]["metadata"]["filename"] == "security.txt"
    # An instance that missed the swap still holds the old record (the old model, a dropped
    # Chroma collection): its searches re-read the record and embed with the new model, and
    # create nothing (no empty orphan of the old collection).
    assert before is not None and before.embedding_model != "local-use"
    chroma = chromadb.PersistentClient(  # the service's settings: the same shared client
        path=str(kb.settings.data_dir / "chroma"),
        settings=chromadb.config.Settings(anonymized_telemetry=False),
    )

    def names() -> set[str]:
        return {c.name for c in chroma.list_collections()}

    wait_for(lambda: before.vector_collection not in names(), 30)  # dropped after the swap
    for mode in ("vector", "hybrid"):
        searches.put("org-a", "default", before)
        found = search(kb, "Which VPN client do we use?", mode=mode, k=1)
        assert found.status_code == 200, found.text
        assert found.json()["results"][0]["metadata"]["filename"] == "security.txt"
    assert before.vector_collection not in names()
    unknown = httpx.post(
        f"{kb.api}/knowledge/reembed",
        headers=kb.headers(role="admin"),
        json={"embedding_model": "nope"},
    )
    assert unknown.status_code == 400 and "local" in unknown.json()["error"]["message"]


def test_cancel_a_processing_document(services: ServiceFactory, fake_openai: FakeOpenAI) -> None:
    kb = services.start(knowledge_inline_max_bytes=10, embedding_batch_size=1, **EMBEDDING)
    fake_openai.delay_next(2.0, times=3)
    text = "\n\n".join(f"Part {i}: " + "alpha beta gamma " * 40 for i in range(6))
    doc = upload(kb, [("slow.txt", text.encode())]).json()["documents"][0]
    assert doc["status"] == "processing"
    cancelled = httpx.post(f"{kb.api}/knowledge/documents/{doc['id']}/cancel", headers=kb.headers())
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = httpx.post(f"{kb.api}/knowledge/documents/{doc['id']}/cancel", headers=kb.headers())
    assert again.status_code == 409
    time.sleep(0.5)
    assert search(kb, "alpha beta", mode="keyword").json()["results"] == []
    url = f"{kb.api}/knowledge/documents/{doc['id']}"
    assert httpx.get(url, headers=kb.headers()).json()["status"] == "cancelled"
    retry = upload(kb, [("slow.txt", text.encode())]).json()["documents"][0]
    assert retry["duplicate"] is False  # a cancelled document can be uploaded again


def test_accepted_documents_survive_a_restart(
    services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    settings = {"knowledge_inline_max_bytes": 10, **EMBEDDING}
    first = services.start(**settings)
    fake_openai.delay_next(30.0)  # the ingestion hangs until the service stops
    doc = upload(first, [("security.txt", VPN.encode())]).json()["documents"][0]
    assert doc["status"] == "processing"
    services.close()  # shut down mid-ingestion
    fake_openai.reset()
    second = services.start(**settings)
    url = f"{second.api}/knowledge/documents/{doc['id']}"
    wait_for(lambda: httpx.get(url, headers=second.headers()).json()["status"] == "ready")
    hits = search(second, "GlobalProtect", mode="hybrid").json()["results"]
    assert [h["document_id"] for h in hits] == [doc["id"]]


def test_reembed_from_the_cli(
    services: ServiceFactory, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cli import app

    kb = services.start(**EMBEDDING)
    upload(kb, [("security.txt", VPN.encode())])
    services.close()
    settings = kb.settings
    monkeypatch.setenv("AHC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("AHC_OPENAI_API_KEY", "sk-service-key")
    monkeypatch.setenv("AHC_OPENAI_BASE_URL", fake_openai.base_url)
    result = CliRunner().invoke(
        app, ["knowledge", "reembed", "--org", "org-a", "--model", "local-use"]
    )
    assert result.exit_code == 0, result.output
    assert "local-use (512 dims)" in result.output
    missing = CliRunner().invoke(app, ["knowledge", "reembed", "--org", "org-b"])
    assert missing.exit_code == 1 and "no knowledge collection" in missing.output
    again = services.start(**EMBEDDING)
    rows = httpx.get(f"{again.api}/knowledge/collections", headers=again.headers()).json()
    assert rows["data"][0]["embedding_model"] == "local-use"
    hits = search(again, "Which VPN client do we use?", mode="vector").json()["results"]
    assert hits[0]["metadata"]["filename"] == "security.txt"
