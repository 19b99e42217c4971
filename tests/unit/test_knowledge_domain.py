"""The knowledge domain's pure parts: filenames, chunking defaults, the search cache, ranking."""

from __future__ import annotations

import time

import pytest

from db.models import KnowledgeCollection
from knowledge.collections import (
    CollectionCache,
    CollectionOptions,
    InvalidChunking,
    new_collection,
)
from knowledge.filenames import FALLBACK, MAX_LENGTH, safe_filename
from knowledge.search import SearchQuery, rank, to_hits
from knowledge.vectors import VectorHit


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/x.txt", "x.txt"),
        ("..\\..\\windows\\x.txt", "x.txt"),
        ("C:\\Users\\me\\보고서.docx", "보고서.docx"),
        ("dir/", FALLBACK),
        ("a/..", FALLBACK),
        (".", FALLBACK),
        ("", FALLBACK),
        (None, FALLBACK),
        ("\x1b[2J\x07", "[2J"),
        ("bidi\u202etxt.exe", "biditxt.exe"),
        ("  spaced name.txt  ", "spaced name.txt"),
        ("line\nbreak.txt", "linebreak.txt"),
    ],
)
def test_safe_filename(sent: str | None, kept: str) -> None:
    assert safe_filename(sent) == kept


def test_long_filename_keeps_its_extension() -> None:
    kept = safe_filename("x" * 1000 + ".pdf")
    assert len(kept) == MAX_LENGTH and kept.endswith(".pdf")


def _new(options: CollectionOptions) -> KnowledgeCollection:
    return new_collection(
        "org",
        "name",
        options,
        embedding_model="m",
        embedding_dim=3,
        default_size=1000,
        default_overlap=150,
    )


def test_new_collection_defaults_and_chunking() -> None:
    made = _new(CollectionOptions())
    assert (made.chunk_size, made.chunk_overlap, made.distance) == (1000, 150, "cosine")
    assert made.vector_collection.startswith("ahc-" + made.id.replace("-", ""))
    small = _new(CollectionOptions(chunk_size=200, distance="ip"))
    assert (small.chunk_size, small.chunk_overlap, small.distance) == (200, 100, "ip")
    with pytest.raises(InvalidChunking):
        _new(CollectionOptions(chunk_size=200, chunk_overlap=200))


def test_collection_cache_expires_and_forgets() -> None:
    cache = CollectionCache(ttl=0.05)
    record = KnowledgeCollection(id="c1", org_id="o", name="n")
    cache.put("o", "n", record)
    assert cache.get("o", "n") is record
    cache.forget("c1")
    assert cache.get("o", "n") is None
    cache.put("o", "n", record)
    time.sleep(0.06)
    assert cache.get("o", "n") is None
    cache.put("o", "n", record)
    cache.put("o", "n", None)  # read as absent: never cached
    assert cache.get("o", "n") is None


def _hit(chunk_id: str, score: float) -> VectorHit:
    return VectorHit(chunk_id=chunk_id, text=chunk_id, metadata={"document_id": "d"}, score=score)


def test_rank_by_mode() -> None:
    vector = [_hit("v1", 0.9), _hit("both", 0.8)]
    keyword = [("both", 5.0), ("k1", 4.0)]
    assert rank(SearchQuery("q", k=1, mode="vector"), vector, keyword) == [("v1", 0.9)]
    assert rank(SearchQuery("q", k=1, mode="keyword"), vector, keyword) == [("both", 5.0)]
    fused = rank(SearchQuery("q", k=3, mode="hybrid"), vector, keyword)
    assert [chunk for chunk, _ in fused] == ["v1", "both", "k1"]  # 0.7, 0.3, 0.24
    assert SearchQuery("q", k=3).fetch == 20 and SearchQuery("q", k=3, mode="vector").fetch == 3
    assert SearchQuery("q", k=15).fetch == 30
    # The vector leg of a hybrid search reads a reserve for the language penalty.
    assert SearchQuery("q", k=3).vector_fetch == 60
    assert SearchQuery("q", k=3, mode="vector").vector_fetch == 3


def test_to_hits_hydrates_keyword_only_and_skips_deleted() -> None:
    vector = [_hit("v1", 0.9)]
    keyword = [("k1", 2.0), ("gone", 1.0)]
    ranked = [("v1", 0.5), ("k1", 0.4), ("gone", 0.3)]
    hits = to_hits(ranked, vector, keyword, {"k1": _hit("k1", 0)}, relevant=False)
    assert [(h.chunk_id, h.vector_score, h.keyword_score) for h in hits] == [
        ("v1", 0.9, None),
        ("k1", None, 2.0),
    ]
    assert all(not h.relevant for h in hits)
