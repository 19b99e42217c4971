"""Reads never create a Chroma collection; a dropped one reads as empty, even from a cached handle.

A search holding a record from before a re-embedding swap asks for a collection that was
dropped, maybe by another instance: it must find nothing (its cue to re-read the record),
not recreate an empty orphan.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from core.config import Settings
from core.vectorstore import ChromaClientProvider
from knowledge.vectors import VectorStore

NAME = "ahc-test-reads"  # + a suffix per test (the server outlives them)


@pytest.fixture(params=["embedded", "server"])
def where_chroma_runs(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for embedded Chroma in ``tmp_path``, or for the session's ``chroma run``."""
    url = request.getfixturevalue("chroma_server") if request.param == "server" else None
    return Settings(_env_file=None, data_dir=tmp_path, chroma_url=url)  # type: ignore[call-arg]


async def _store(settings: Settings) -> tuple[VectorStore, ChromaClientProvider, str]:
    clients = ChromaClientProvider(settings)
    clients.start()
    await clients.get()
    return VectorStore(clients), clients, f"{NAME}-{uuid.uuid4().hex[:8]}"


async def _names(clients: ChromaClientProvider) -> set[str]:
    return {c.name for c in (await clients.get()).list_collections()}


async def test_reads_of_a_missing_collection_find_nothing_and_create_nothing(
    where_chroma_runs: Settings,
) -> None:
    vectors, clients, name = await _store(where_chroma_runs)
    assert await vectors.search(name, "cosine", [1.0, 0.0], k=3) == []
    assert await vectors.search(name, "cosine", [1.0, 0.0], k=3, mmr=True) == []
    assert await vectors.nearest(name, "cosine", [1.0, 0.0], k=3) == []
    assert await vectors.ids_matching(name, "cosine", {"team": "hr"}) == set()
    assert await vectors.count(name, "cosine") == 0
    await vectors.delete(name, "cosine", ["a"])
    assert name not in await _names(clients)


async def test_a_cached_handle_of_a_dropped_collection_reads_as_empty(
    where_chroma_runs: Settings,
) -> None:
    vectors, clients, name = await _store(where_chroma_runs)
    await vectors.add(
        name, "cosine", ids=["a"], texts=["alpha"], vectors=[[1.0, 0.0]], metadatas=[{"n": 1}]
    )
    assert [cid for cid, _ in await vectors.nearest(name, "cosine", [1.0, 0.0], k=1)] == ["a"]
    assert [h.chunk_id for h in await vectors.search(name, "cosine", [1.0, 0.0], k=1)] == ["a"]
    # Another process drops it: this one's handles are stale.
    (await clients.get()).delete_collection(name)
    assert await vectors.nearest(name, "cosine", [1.0, 0.0], k=1) == []
    assert await vectors.search(name, "cosine", [1.0, 0.0], k=1) == []
    assert await vectors.ids_matching(name, "cosine", {"n": 1}) == set()
    assert name not in await _names(clients)
