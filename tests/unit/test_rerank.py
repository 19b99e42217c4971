"""The rerank stage's pure parts: the judge's grades and an endpoint's scores → the order."""

from __future__ import annotations

from knowledge.rerank import (
    PassageGrade,
    RelevanceVerdict,
    grades_by_position,
    judge_passages,
    reorder,
    scores_from_results,
)
from knowledge.search import SearchHit


def hit(n: int, *, relevant: bool = True) -> SearchHit:
    return SearchHit(
        document_id=f"doc-{n}",
        chunk_id=f"chunk-{n}",
        text=f"passage {n} " + "word " * 50,
        score=1 - n / 10,
        metadata={},
        relevant=relevant,
    )


def test_grades_by_position_ignores_strays_and_keeps_the_best() -> None:
    verdict = RelevanceVerdict(
        grades=[
            PassageGrade(passage=2, grade=3),
            PassageGrade(passage=9, grade=3),  # no such passage
            PassageGrade(passage=1, grade=1),
            PassageGrade(passage=1, grade=2),  # graded twice: the best
        ]
    )
    assert grades_by_position(verdict, 3) == [2, 3, 0]  # the third left out: 0


def test_reorder_sorts_by_score_stably_cuts_to_k_and_judges_relevance() -> None:
    hits = [hit(1), hit(2), hit(3), hit(4)]
    out = reorder(hits, [1 / 3, 1.0, 1 / 3, 0.0], k=3, min_score=2 / 3)
    assert [h.chunk_id for h in out] == ["chunk-2", "chunk-1", "chunk-3"]
    assert [h.relevant for h in out] == [True, False, False]
    assert out[0].rerank_score == 1.0 and out[0].score == hits[1].score  # fused score kept


def test_reorder_without_a_bar_keeps_the_searchs_verdict() -> None:
    hits = [hit(1, relevant=False), hit(2, relevant=False)]
    out = reorder(hits, [0.1, 0.9], k=2, min_score=None)
    assert [h.chunk_id for h in out] == ["chunk-2", "chunk-1"]
    assert not any(h.relevant for h in out)


def test_scores_from_results_ranks_missing_documents_last() -> None:
    results = [
        {"index": 2, "relevance_score": 0.8},
        {"index": 0, "relevance_score": -1.5},  # cross-encoder logits may be negative
        {"index": 7, "relevance_score": 5.0},  # out of range
        {"index": "1", "relevance_score": 0.1},  # malformed
    ]
    scores = scores_from_results(results, 3)
    assert scores[2] == 0.8 and scores[0] == -1.5
    assert scores[1] < -1.5  # not returned (top_n): below every returned one


def test_judge_passages_numbers_and_cuts() -> None:
    text = judge_passages([hit(1), hit(2)], max_chars=30)
    assert text.startswith("[1] passage 1 word") and "\n\n[2] passage 2" in text
    assert all(len(block) <= 4 + 30 + 4 for block in text.split("\n\n"))
