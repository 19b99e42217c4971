"""Merge the vector and keyword rankings of a hybrid search into one.

Two ways: reciprocal rank fusion (ranks only; kept for comparison in bench/rag_quality.py)
and score fusion, the default: each leg's scores scaled to 0..1 within the search, then
weighted. Score fusion keeps how far ahead a leg's best hit is, where RRF keeps only its
order: a confident vector hit is not outranked by a keyword hit that matched one common
word (the cross-lingual failure of RRF, measured in bench/rag_quality.py).

:func:`cross_lingual_confidence` tells how sure a search is that its answer is written in
the other language, which ``knowledge.search.rank`` scales its language penalty by: z-score
and max normalisations and CombMNZ ranked worse on the same questions
(bench/results/fusion-2026-12-05b.txt).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

RRF_K = 60
"""The usual constant of Cormack et al. (2009): damps the weight of the very first ranks."""


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[K]], *, k: int = RRF_K
) -> list[tuple[K, float]]:
    """Items of every ranking, best first, scored by ``sum(1 / (k + rank))`` (rank from 1)."""
    scores: dict[K, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: pair[1], reverse=True)


def score_fusion(
    vector: Sequence[tuple[K, float]],
    keyword: Sequence[tuple[K, float]],
    *,
    keyword_weight: float,
    keyword_best: float | None = None,
) -> list[tuple[K, float]]:
    """Items of both legs, best first, scored ``(1 - w) * vector' + w * keyword'``.

    ``vector'`` is min-max scaled over the vector hits (similarities crowd a narrow band
    that differs per model: only their spread within the search means anything);
    ``keyword'`` is BM25 over the search's best BM25 (zero is its natural floor; or over
    ``keyword_best`` when the caller scaled some hits down). An item one leg did not
    return scores that leg's floor, 0. Ties keep the vector leg's order.
    """
    fused: dict[K, float] = {}
    if vector:
        values = [score for _, score in vector]
        low, spread = min(values), max(values) - min(values)
        for item, score in vector:
            scaled = (score - low) / spread if spread > 0 else 1.0
            fused[item] = (1.0 - keyword_weight) * scaled
    best = max((score for _, score in keyword), default=0.0)
    if keyword_best is not None and best > 0:
        best = max(keyword_best, best)
    if best > 0:
        for item, score in keyword:
            fused[item] = fused.get(item, 0.0) + keyword_weight * max(score, 0.0) / best
    order = {item: position for position, (item, _) in enumerate(vector)}
    return sorted(fused.items(), key=lambda pair: (-pair[1], order.get(pair[0], len(order))))


STANDOUT_DEPTH = 5
"""How far down each language's similarities :func:`cross_lingual_confidence` looks: the
gap between a language's best hit and its 5th best."""
STANDOUT_SCALE = 0.02
"""The standout difference (similarity) that moves the confidence from 0.5 to 1 (or 0)."""
CROSS_LINGUAL_FLOOR = 0.5
"""The least confidence when both languages are among the hits: the standout misreads
questions whose own-language crowd shares a word with them, so half the penalty always
applies (with 0, bench/rag_quality.py: cross-lingual MRR@5 0.755 and hit@5 0.88 instead of
0.805 / 0.97, holdout 0.679 instead of 0.717; Korean 0.984 instead of 0.969)."""


def standout(similarities: Sequence[float], depth: int = STANDOUT_DEPTH) -> float:
    """How far the best of ``similarities`` (sorted, best first) is ahead of the ``depth``-th."""
    if not similarities:
        return 0.0
    return similarities[0] - similarities[min(depth, len(similarities)) - 1]


def cross_lingual_confidence(
    own: Sequence[float], other: Sequence[float], *, other_keyword: float = 0.0
) -> float:
    """How sure a search is (0..1) that its answer is written in the other language.

    ``own`` and ``other`` are the vector hits' similarities in the query's language and in
    the other one, best first. A chunk that answers the question stands out of its own
    language's crowd; the language bias of a multilingual embedder lifts every chunk of the
    query's language alike and makes none stand out. So the other language's standout
    against the query language's, in :data:`STANDOUT_SCALE` steps around 0.5, at least
    :data:`CROSS_LINGUAL_FLOOR` (no hit in one of the languages: 0, nothing to be fair to).
    Measured on bench/rag_quality.py's questions, the standout difference tells
    cross-lingual questions from the others with an AUC of 0.93 (holdout set 0.95).

    ``other_keyword``: the best BM25 of a chunk in the other language over the best BM25
    (0..1). BM25 matches the other language only through shared tokens (a name, a code such
    as "PO"), so a strong match there is evidence of its own; the larger of the two counts.
    """
    by_vector = 0.0
    if own and other:
        difference = standout(other) - standout(own)
        by_vector = min(max(difference / STANDOUT_SCALE + 0.5, CROSS_LINGUAL_FLOOR), 1.0)
    return max(by_vector, min(max(other_keyword, 0.0), 1.0))
