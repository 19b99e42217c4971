"""BM25 scores of chunk numbers and the best of them (numpy only, no I/O).

Okapi BM25: k1 = 1.2, b = 0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5)), one point per
distinct query term. Two ways to the same top k:

- **dense**: every posting of every query term summed into an array over the collection's
  numbers. Its cost is the common terms' postings (a word in 90% of 100k chunks is 90k of
  them): 3 ms of CPU for a query of three common words at 100k chunks.
- **pruned** (MaxScore): a term adds less than its weight idf·(k1 + 1) to any chunk,
  since tf / (tf + k1·(1 - b + b·len/avgdl)) < 1. So when the chunks that hold one of the
  rarer terms already include ``limit`` whose full scores beat the weights of all the other
  terms put together, no chunk without a rarer term can reach the top: only those
  candidates are scored, the other terms looked up by binary search in their postings
  (sorted by number). Tried first; it hands over to dense when the bound does not hold.

Both compute a posting's share with the same operations and sum a chunk's terms in the
same order, so their scores, and their results, are identical to the last bit (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from knowledge.keyword_index.layout import K1, B
from knowledge.keyword_index.postings import Postings
from knowledge.keyword_index.reads import Stats

Scores = np.ndarray[Any, np.dtype[np.float64]]
Numbers = np.ndarray[Any, Any]
Blocked = Callable[[Numbers], np.ndarray[Any, np.dtype[np.bool_]]]
"""Which of these numbers may not be returned (removed, or filtered out)."""


def idf(chunks: int, df: int) -> float:
    """BM25's idf: ln(1 + (N - df + 0.5) / (df + 0.5)), never negative."""
    return math.log(1.0 + (chunks - df + 0.5) / (df + 0.5))


def _weight(stats: Stats, term: str) -> float:
    """The most a term can add to a chunk's score (never reached)."""
    return idf(stats.chunks, stats.df[term]) * (K1 + 1)


def _shares(stats: Stats, found: Postings, weight: float, at: Numbers | None = None) -> Scores:
    """A term's BM25 in each chunk of its postings (only those at positions ``at`` if given)."""
    slope = K1 * B / stats.average_length if stats.average_length > 0 else 0.0
    tf = (found.tf if at is None else found.tf[at]).astype(np.float64)
    share = (found.length if at is None else found.length[at]).astype(np.float64)
    share *= slope  # in place from here: fewer temporaries
    share += K1 * (1 - B)
    share += tf
    np.divide(tf, share, out=share)
    share *= weight
    return share


def dense(stats: Stats, postings: Mapping[str, Postings]) -> Scores:
    """BM25 of every chunk number (0 where no query term occurs), one ``bincount``."""
    size = max([stats.numbers, *(int(p.numbers.max()) + 1 for p in postings.values() if p.size)])
    shares = [_shares(stats, found, _weight(stats, term)) for term, found in postings.items()]
    numbers = np.concatenate([found.numbers for found in postings.values()])
    scores = np.bincount(numbers, weights=np.concatenate(shares), minlength=size)
    return scores.astype(np.float64, copy=False)


def best(scores: Scores, limit: int) -> list[int]:
    """The numbers of the ``limit`` best positive scores, ties by number.

    Partitions only the matched scores: ``argpartition`` over the whole array (mostly
    zeros, all equal) measured 11 ms for 100k numbers, this well under one.
    """
    return [int(n) for n in _top(scores, None, limit)]


def _top(values: Scores, numbers: Numbers | None, limit: int) -> Numbers:
    """Positions in ``values`` of the ``limit`` best positive ones, ties by number.

    ``numbers``: the chunk number at each position (None: the position is the number).
    """
    keep = np.flatnonzero(values > 0)
    if len(keep) > limit:
        kept = values[keep]
        cutoff = np.partition(kept, len(kept) - limit)[len(kept) - limit]
        keep = keep[kept >= cutoff]  # ties at the cutoff: all kept, sorted below
    order = np.lexsort((keep if numbers is None else numbers[keep], -values[keep]))
    return keep[order[:limit]]


_LOOKUP_COST = 3
"""A candidate looked up in one term's postings, in dense postings' time (measured ~3)."""


def pruned(
    stats: Stats, postings: Mapping[str, Postings], limit: int, blocked: Blocked | None
) -> list[tuple[int, float]] | None:
    """The ``limit`` best (number, score) by MaxScore, or None when it would not pay.

    The rarest term is essential first; one more is added while the bound fails. With
    every term essential the candidates are every chunk that matches at all. Gives up as
    soon as looking the candidates up would cost more than the dense sum.
    """
    order = sorted(postings, key=lambda term: (postings[term].size, term))
    weights = {term: _weight(stats, term) for term in postings}
    dense_cost = sum(p.size for p in postings.values()) + stats.numbers // 4
    for essential in range(1, len(order) + 1):
        most = sum(postings[term].size for term in order[:essential])
        if most * len(order) * _LOOKUP_COST > dense_cost:
            return None  # scoring this many candidates costs more than scoring everything
        bound = sum(weights[term] for term in order[essential:])
        candidates = (
            postings[order[0]].numbers  # sorted, each number once
            if essential == 1
            else np.unique(np.concatenate([postings[t].numbers for t in order[:essential]]))
        )
        scores = np.zeros(len(candidates), dtype=np.float64)
        for term, found in postings.items():  # the order dense sums them in
            if not found.size:
                continue
            at = np.searchsorted(found.numbers, candidates)
            np.minimum(at, found.size - 1, out=at)
            hit = found.numbers[at] == candidates
            scores[hit] += _shares(stats, found, weights[term], at[hit])
        if blocked is not None:
            scores[blocked(candidates)] = 0.0
        positive = scores[scores > 0]
        if essential < len(order):
            if len(positive) < limit:
                continue
            threshold = np.partition(positive, len(positive) - limit)[len(positive) - limit]
            if not bound < threshold:
                continue
        top = _top(scores, candidates, limit)
        return [(int(candidates[i]), float(scores[i])) for i in top]
    return None
