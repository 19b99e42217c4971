"""Knowledge-base races (issue 17): first writes that many clients make at once.

Real concurrency: eight requests gathered over one ``httpx.AsyncClient`` against the live
service, on SQLite and PostgreSQL. Each answer must be the one a sequential request would
get: no 500 from the loser of an insert race, no loser told it won.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support.service import RunningService, ServiceFactory

EMBEDDING = {"embedding_model": "text-embedding-3-small"}
POLICY = (
    "Expense policy. Employees submit receipts in Concur within 30 days. "
    "Meals are reimbursed up to 50 dollars per day while travelling."
)
CONCURRENCY = 16


@pytest.fixture
def kb(db_services: ServiceFactory) -> RunningService:
    """The service on SQLite and PostgreSQL (tables emptied per test)."""
    return db_services.start(**EMBEDDING)


async def _gather(
    kb: RunningService, send: list[tuple[str, str, dict[str, object]]]
) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=kb.api, headers=kb.headers(), timeout=60) as client:
        return list(
            await asyncio.gather(*(client.request(m, url, **kw) for m, url, kw in send))  # type: ignore[arg-type]
        )


async def test_concurrent_uploads_of_one_content_are_one_document(kb: RunningService) -> None:
    async with httpx.AsyncClient(base_url=kb.api, headers=kb.headers(), timeout=60) as client:
        made = await client.post("/knowledge/collections", json={"name": "default"})
        assert made.status_code == 201, made.text  # the race is on the document alone
    requests = [
        (
            "POST",
            "/knowledge/documents",
            {"files": [("files", (f"policy-{i}.txt", POLICY.encode(), "text/plain"))]},
        )
        for i in range(CONCURRENCY)
    ]
    responses = await _gather(kb, requests)
    assert [r.status_code for r in responses] == [201] * CONCURRENCY, [r.text for r in responses]
    documents = [r.json()["documents"][0] for r in responses]
    assert len({d["id"] for d in documents}) == 1
    assert sum(not d["duplicate"] for d in documents) == 1
    async with httpx.AsyncClient(base_url=kb.api, headers=kb.headers(), timeout=60) as client:
        listing = (await client.get("/knowledge/documents")).json()
        assert listing["count"] == 1
        # the losers wrote nothing: every chunk found belongs to the one document
        found = await client.post(
            "/knowledge/search", json={"query": "receipts Concur", "k": 20, "mode": "hybrid"}
        )
    hits = found.json()["results"]
    assert hits and {h["document_id"] for h in hits} == {documents[0]["id"]}
    assert len({h["chunk_id"] for h in hits}) == len(hits) == listing["data"][0]["chunks"]


async def test_concurrent_creates_of_one_collection_one_wins(kb: RunningService) -> None:
    distances = [("cosine", "ip", "l2")[i % 3] for i in range(CONCURRENCY)]
    requests = [
        (
            "POST",
            "/knowledge/collections",
            {"json": {"name": "finance", "distance": distance, "chunk_size": 300 + i}},
        )
        for i, distance in enumerate(distances)
    ]
    responses = await _gather(kb, requests)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (CONCURRENCY - 1), [r.text for r in responses]
    winner = next(i for i, r in enumerate(responses) if r.status_code == 201)
    body = responses[winner].json()
    assert body["distance"] == distances[winner] and body["chunk_size"] == 300 + winner
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "collection_exists"
    async with httpx.AsyncClient(base_url=kb.api, headers=kb.headers(), timeout=60) as client:
        listed = (await client.get("/knowledge/collections")).json()["data"]
    assert [(c["name"], c["distance"]) for c in listed] == [("finance", distances[winner])]


async def test_concurrent_first_uploads_to_a_new_collection(kb: RunningService) -> None:
    requests = [
        (
            "POST",
            "/knowledge/documents",
            {
                "files": [
                    ("files", (f"doc-{i}.txt", f"{POLICY} Copy {i}.".encode(), "text/plain"))
                ],
                "data": {"collection": "fresh"},
            },
        )
        for i in range(CONCURRENCY)
    ]
    responses = await _gather(kb, requests)
    assert [r.status_code for r in responses] == [201] * CONCURRENCY, [r.text for r in responses]
    async with httpx.AsyncClient(base_url=kb.api, headers=kb.headers(), timeout=60) as client:
        listed = (await client.get("/knowledge/collections")).json()["data"]
        documents = (await client.get("/knowledge/documents?collection=fresh")).json()
    assert [c["name"] for c in listed] == ["fresh"]
    assert documents["count"] == CONCURRENCY
