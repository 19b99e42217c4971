"""Retrieval quality floors on the fixed knowledge set, through the API with the default embedder.

The 24 documents of ``tests/data/knowledge`` are uploaded with the embedded default
(``local``, no key); every question of ``questions.jsonl`` is searched (hybrid, k=5) and
asked through the RAG graph, as are the questions of ``unanswerable.jsonl``,
``holdout_unanswerable.jsonl`` (written before the relevance gate was tuned, never tuned on),
``holdout_cross.jsonl``, ``holdout_cross_2.jsonl`` and ``rare_terms.jsonl``. The floors sit
just below what bench/rag_quality.py measures, so a regression in the embedder, the fusion,
the chunking or the relevance gate fails the build; the full bench (every mode, latencies,
calibration) stays outside CI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chains.rag import NOT_FOUND_ANSWER
from tests.fakes.openai_server import FakeOpenAI
from tests.support.knowledge import DATA, search
from tests.support.service import RunningService, ServiceFactory

KNOWLEDGE = DATA / "knowledge"
K = 5
CONTENT_TYPES = {".md": "text/markdown", ".txt": "text/plain"}

# ~40 s of CPU in all (ingestion with e5 is most of it); a shared machine stretches the wall
# time well past the default per-test timeout.
pytestmark = pytest.mark.timeout(900)

# Measured by bench/rag_quality.py (local-e5use, hybrid; bench/results/fusion-2026-12-05b.txt):
# hit@5 / MRR@5 ko 0.97 / 0.969, en 1.00 / 0.984, cross 0.97 / 0.805; the vector leg alone
# ko 1.00 / 0.969, en 1.00 / 0.984, cross 0.91 / 0.640. RAG answered 0.97 (93/96), refused
# 0.67 (16/24); the rare-term questions 12/12 answered. The holdout sets (never tuned on):
# unanswerable refused 0.52 (17/33: company 13/29, off-topic 4/4), holdout_cross answered
# 0.90 (18/20).
FLOORS = {
    "ko": (0.95, 0.94),
    "en": (0.97, 0.96),
    "cross": (0.93, 0.78),
}
BEST_LEG_SLACK = 0.02
"""How far below its best single leg hybrid MRR@5 may fall in a group (the issue: never
worse; measured equal or better; the slack is one question's rank 1 -> 2 in 32)."""
MIN_ANSWERED = 0.95
MIN_REFUSED = 0.62
MIN_REFUSED_HOLDOUT = 0.48
MIN_ANSWERED_HOLDOUT = 0.85
HOLDOUT_CROSS_FLOORS = {"holdout_cross.jsonl": (0.85, 0.68), "holdout_cross_2.jsonl": (0.90, 0.67)}
"""hit@5 / MRR@5 of hybrid on the cross-lingual questions never tuned on: measured 0.90 /
0.717 (20) and 0.97 / 0.708 (30; bench/results/rag-quality-holdout2-2026-12-05.txt)."""


def rows(name: str) -> list[dict[str, Any]]:
    lines = (KNOWLEDGE / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def group(question: dict[str, Any]) -> str:
    return "cross" if question["cross_lingual"] else str(question["lang"])


def refused(service: RunningService, question: str) -> bool:
    """Whether the RAG graph answers "not found" (no model call) to ``question``."""
    response = httpx.post(
        f"{service.api}/knowledge/query",
        headers=service.headers(),
        json={"question": question},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return bool(response.json()["answer"] == NOT_FOUND_ANSWER)


@pytest.fixture(scope="module")
def knowledge_service(
    tmp_path_factory: pytest.TempPathFactory, _fake_openai_session: FakeOpenAI
) -> Iterator[RunningService]:
    """One service with the knowledge set uploaded (once: ingestion is the slow part)."""
    factory = ServiceFactory(
        tmp_path_factory.mktemp("quality"), _fake_openai_session.base_url, None
    )
    service = factory.start(knowledge_inline_wait_seconds=600)
    for path in sorted(KNOWLEDGE.iterdir()):
        if path.suffix in CONTENT_TYPES:
            response = httpx.post(
                f"{service.api}/knowledge/documents",
                headers=service.headers(),
                files=[("files", (path.name, path.read_bytes(), CONTENT_TYPES[path.suffix]))],
                timeout=600,  # one file, ingested before the answer (a busy CI machine)
            )
            assert response.status_code == 201, response.text
            assert response.json()["documents"][0]["status"] == "ready", response.text
    yield service
    factory.close()


def _measure(
    service: RunningService, mode: str, questions: str = "questions.jsonl"
) -> dict[str, tuple[float, float]]:
    """hit@K and MRR@K per language group of the ``questions`` file searched in ``mode``."""
    found: dict[str, list[float]] = {}
    for question in rows(questions):
        response = search(service, question["question"], k=K, mode=mode)
        assert response.status_code == 200, response.text
        files = [hit["metadata"]["filename"] for hit in response.json()["results"]]
        rank = files.index(question["document"]) + 1 if question["document"] in files else None
        found.setdefault(group(question), []).append(1.0 / rank if rank else 0.0)
    return {
        name: (sum(r > 0 for r in ranks) / len(ranks), sum(ranks) / len(ranks))
        for name, ranks in found.items()
    }


def test_hit_rate_and_mrr_floors_per_language_group(knowledge_service: RunningService) -> None:
    measured = _measure(knowledge_service, "hybrid")
    print(measured)
    for name, (min_hit, min_mrr) in FLOORS.items():
        hit, mrr = measured[name]
        assert hit >= min_hit and mrr >= min_mrr, (name, measured)


def test_cross_lingual_floors_on_the_holdout_sets(knowledge_service: RunningService) -> None:
    """Cross-lingual retrieval on questions written after the tuning, never tuned on."""
    for name, (min_hit, min_mrr) in HOLDOUT_CROSS_FLOORS.items():
        hit, mrr = _measure(knowledge_service, "hybrid", name)["cross"]
        print(name, hit, mrr)
        assert hit >= min_hit and mrr >= min_mrr, (name, hit, mrr)


def test_hybrid_is_never_worse_than_its_best_leg(knowledge_service: RunningService) -> None:
    """The default mode's MRR@5 against each single leg's, per language group."""
    hybrid = _measure(knowledge_service, "hybrid")
    legs = {mode: _measure(knowledge_service, mode) for mode in ("vector", "keyword")}
    print({"hybrid": hybrid, **legs})
    for name, (_, mrr) in hybrid.items():
        best = max(measured[name][1] for measured in legs.values())
        assert mrr >= best - BEST_LEG_SLACK, (name, hybrid, legs)


def test_rag_refuses_unanswerable_and_answers_the_rest(
    knowledge_service: RunningService,
) -> None:
    answerable = rows("questions.jsonl")
    answered = [not refused(knowledge_service, q["question"]) for q in answerable]
    unanswerable = rows("unanswerable.jsonl")
    declined = [refused(knowledge_service, q["question"]) for q in unanswerable]
    print({"answered": sum(answered) / len(answered), "refused": sum(declined) / len(declined)})
    assert sum(answered) / len(answered) >= MIN_ANSWERED
    assert sum(declined) / len(declined) >= MIN_REFUSED
    off_topic = [r for q, r in zip(unanswerable, declined, strict=True) if q["kind"] == "off_topic"]
    assert all(off_topic)


def test_rag_refusal_holds_on_the_holdout_sets(knowledge_service: RunningService) -> None:
    """The gate on questions it was never tuned on: unanswerable and cross-lingual ones."""
    unanswerable = rows("holdout_unanswerable.jsonl")
    declined = [refused(knowledge_service, q["question"]) for q in unanswerable]
    answerable = rows("holdout_cross.jsonl")
    answered = [not refused(knowledge_service, q["question"]) for q in answerable]
    print({"refused": sum(declined) / len(declined), "answered": sum(answered) / len(answered)})
    assert sum(declined) / len(declined) >= MIN_REFUSED_HOLDOUT
    assert sum(answered) / len(answered) >= MIN_ANSWERED_HOLDOUT
    off_topic = [r for q, r in zip(unanswerable, declined, strict=True) if q["kind"] == "off_topic"]
    assert all(off_topic)


def test_questions_naming_a_code_found_in_two_chunks_are_answered(
    knowledge_service: RunningService,
) -> None:
    """The identifier rule: a name or code few chunks hold is answered, not refused.

    Each term is held by exactly two chunks, and each question's similarity is below the
    model's bar: the old rule (one-chunk BM25 unit) refused half of them.
    """
    for item in rows("rare_terms.jsonl"):
        hits = search(knowledge_service, item["question"], k=4).json()["results"]
        assert {hit["metadata"]["filename"] for hit in hits} & set(item["documents"]), item
        assert not refused(knowledge_service, item["question"]), item
