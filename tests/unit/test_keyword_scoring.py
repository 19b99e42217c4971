"""MaxScore pruning gives the dense scorer's top k exactly: same chunks, same bits."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.keyword_index import scoring
from knowledge.keyword_index.postings import Postings
from knowledge.keyword_index.reads import Stats

N = 5000


def collection(seed: int) -> tuple[Stats, dict[str, Postings]]:
    """Terms from very common to rare over N chunks, postings sorted by number."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 300, N).astype(np.uint16)
    postings: dict[str, Postings] = {}
    for i, df in enumerate([4800, 3000, 1200, 400, 90, 30, 7, 2, 1]):
        numbers = np.sort(rng.choice(N, df, replace=False)).astype(np.uint32)
        tf = rng.integers(1, 6, df).astype(np.uint16)
        postings[f"t{i}"] = Postings(1, numbers, tf, lengths[numbers])
    total = int(lengths.sum())
    stats = Stats(
        chunks=N,
        tokens=total,
        average_length=total / N,
        version=1,
        numbers=N,
        df={term: p.size for term, p in postings.items()},
    )
    return stats, postings


def dense_top(
    stats: Stats, postings: dict[str, Postings], limit: int, blocked: np.ndarray | None
) -> list[tuple[int, float]]:
    scores = scoring.dense(stats, postings)
    if blocked is not None:
        scores[blocked] = 0.0
    return [(n, float(scores[n])) for n in scoring.best(scores, limit)]


@pytest.mark.parametrize("seed", range(6))
def test_pruned_equals_dense_to_the_bit(seed: int) -> None:
    stats, every = collection(seed)
    rng = np.random.default_rng(100 + seed)
    terms = sorted(every)
    pruned_used = 0
    for _ in range(200):
        picked = sorted(rng.choice(terms, rng.integers(1, 5), replace=False).tolist())
        query = {term: every[term] for term in picked}
        limit = int(rng.integers(1, 25))
        dead = np.unique(rng.choice(N, int(rng.integers(0, 300)))) if rng.random() < 0.5 else None
        blocked = None
        if dead is not None:
            frozen = dead

            def blocked(numbers: np.ndarray, frozen: np.ndarray = frozen) -> np.ndarray:
                return np.isin(numbers, frozen)

        got = scoring.pruned(stats, query, limit, blocked)
        want = dense_top(stats, query, limit, dead)
        if got is not None:
            pruned_used += 1
            assert got == want, (picked, limit)  # exact floats, same order
    assert pruned_used > 50  # the pruned path was exercised, not only the fallback


def test_a_rare_term_prunes_the_common_ones() -> None:
    stats, every = collection(0)
    query = {term: every[term] for term in ("t0", "t1", "t5")}  # 4800, 3000 and 30 chunks
    got = scoring.pruned(stats, query, 5, None)
    assert got is not None and got == dense_top(stats, query, 5, None)


def test_only_common_terms_fall_back_to_dense() -> None:
    stats, every = collection(0)
    query = {term: every[term] for term in ("t0", "t1")}
    assert scoring.pruned(stats, query, 5, None) is None
