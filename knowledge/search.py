"""Hybrid search's pure parts: the query and hit types, the relevance gate, the ranking.

The service (``services.knowledge.search``) runs the two legs — the vector leg in Chroma,
the keyword leg (BM25) in SQL — and hands their hits to these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from knowledge import keyword_index
from knowledge.collections import DEFAULT_COLLECTION
from knowledge.fusion import cross_lingual_confidence, score_fusion
from knowledge.language import script_of
from knowledge.vectors import VectorHit

SearchMode = Literal["vector", "keyword", "hybrid"]

HYBRID_FETCH = 20
"""Hits each leg of a hybrid search contributes at least (measured in bench/rag_quality.py)."""
VECTOR_RESERVE = 3
"""The vector leg of a hybrid search reads this many times :attr:`SearchQuery.fetch`."""


@dataclass(frozen=True)
class Fusion:
    """How a hybrid search merges its legs (per embedding model where the scale differs)."""

    keyword_weight: float = 0.2
    """BM25's share in the fused score (the vector leg has the rest)."""
    language_penalty: float = 0.0
    """The most similarity taken off chunks in the query's own script before fusing: the
    multilingual embedders' bias towards the query's language, which buries the answer to
    a cross-lingual question. :func:`rank` scales it by how sure the search is that the
    answer is in the other language, and waives it for chunks BM25 vouches for."""


@dataclass(frozen=True)
class SearchQuery:
    """A knowledge search, as the API and the RAG graph ask it."""

    query: str
    k: int = 4
    filter: dict[str, Any] | None = None
    collection: str = DEFAULT_COLLECTION
    mmr: bool = False
    mode: SearchMode = "hybrid"
    min_similarity: float | None = None
    """The similarity bar of :func:`found_relevant` (None: the collection's model's)."""
    rerank: bool | str | None = None
    """The rerank stage (``services.knowledge.rerank``): None the service's default, False
    off, True the default judge, or a judge's model name."""

    @property
    def fetch(self) -> int:
        """How many hits each leg contributes: k, or for hybrid at least :data:`HYBRID_FETCH`.

        Score fusion scales each leg over its hits, so a hybrid leg needs enough of them to
        show its spread, and the vector leg enough to reach past the query's own language
        (see :func:`rank`).
        """
        return self.k if self.mode != "hybrid" else max(2 * self.k, HYBRID_FETCH)

    @property
    def vector_fetch(self) -> int:
        """The vector leg's hits: for hybrid, a reserve past :attr:`fetch`.

        The language penalty of :func:`rank` can lift chunks of the other language from it.
        """
        return self.fetch if self.mode != "hybrid" else VECTOR_RESERVE * self.fetch


@dataclass(frozen=True)
class SearchHit:
    """A chunk found for a query; ``score`` is the similarity, BM25 or fused score."""

    document_id: str
    chunk_id: str
    text: str
    score: float
    metadata: dict[str, Any]
    vector_score: float | None = None
    keyword_score: float | None = None
    relevant: bool = True
    """Whether the search found anything relevant (:func:`found_relevant`), the same for
    every hit of one search: the RAG graph answers "not found" without a model call when
    it is False."""
    rerank_score: float | None = None
    """The rerank stage's score (None: not reranked, or its judge failed)."""


def keyword_unit(chunks: int) -> float:
    """The keyword bar's unit: BM25 of one query term that a single chunk of ``chunks`` has.

    That is idf(N, df=1) * (k1 + 1), the ceiling of the rarest term's contribution; a score
    in these units does not drift with the collection's size as raw BM25 does (idf grows
    with ln N).
    """
    return keyword_index.idf(max(chunks, 1), 1) * (keyword_index.K1 + 1)


def found_relevant(
    best_similarity: float | None,
    best_keyword: float | None,
    *,
    min_similarity: float | None,
    min_keyword: float | None,
    unit: float,
) -> bool:
    """Whether a search found something relevant enough to answer from.

    Yes when the best chunk by similarity reaches ``min_similarity`` (None: any similarity
    does), or the best chunk by BM25 reaches ``min_keyword`` keyword units (``unit``, see
    :func:`keyword_unit`; None: BM25 alone never suffices). Both are the best of
    their whole leg, so the verdict holds for every hit of the search: a right chunk ranked
    high by BM25 but low by similarity (or the other way round) is kept whenever the
    question itself clears the bar. Calibrated per embedding model in bench/rag_quality.py.
    """
    if best_similarity is not None and (
        min_similarity is None or best_similarity >= min_similarity
    ):
        return True
    if best_keyword is None or best_keyword <= 0 or min_keyword is None:
        return False
    return best_keyword >= min_keyword * unit


def rank(
    query: SearchQuery,
    vector_hits: Sequence[VectorHit],
    keyword_hits: Sequence[tuple[str, float]],
    fusion: Fusion | None = None,
) -> list[tuple[str, float]]:
    """The best ``k`` chunk ids with their score: one leg's own, or fused for hybrid.

    Hybrid: :func:`~knowledge.fusion.score_fusion` of the similarities and BM25, made fair
    to the other language by how sure the search is that the answer is written in it
    (``c``, :func:`~knowledge.fusion.cross_lingual_confidence`):

    - chunks in the query's script lose ``c * fusion.language_penalty`` of similarity,
      less the share of the best BM25 they reach (the keyword leg's own vouching: a chunk
      BM25 ranks first keeps its similarity);
    - BM25 of chunks in the query's script is scaled by ``1 - c``: BM25 matches the
      query's own words, so for a cross-lingual question those matches are noise (its
      matches in the other language, a name or a code, keep their weight).

    ``c`` is also at least the other language's best BM25 over the best BM25 (a shared name
    or code). The hits are then cut to the best ``query.fetch`` (the reserve beyond served
    only the penalty). A question that is sure to be in its own language (``c`` = 0) is fused as
    plain score fusion; a collection in one language has ``c`` = 0 throughout.
    """
    if query.mode == "vector":
        return [(hit.chunk_id, hit.score) for hit in vector_hits[: query.k]]
    if query.mode == "keyword":
        return list(keyword_hits[: query.k])
    fusion = fusion or Fusion()
    vector = [(hit.chunk_id, hit.score) for hit in vector_hits]
    keyword = list(keyword_hits)
    best = max((score for _, score in keyword_hits), default=0.0)
    own = script_of(query.query) if fusion.language_penalty else ""
    if own:
        in_own = {hit.chunk_id: script_of(hit.text) == own for hit in vector_hits}
        other_keyword = max(
            (score for cid, score in keyword_hits if not in_own.get(cid, True)), default=0.0
        )
        confidence = cross_lingual_confidence(
            sorted((hit.score for hit in vector_hits if in_own[hit.chunk_id]), reverse=True),
            sorted((hit.score for hit in vector_hits if not in_own[hit.chunk_id]), reverse=True),
            other_keyword=other_keyword / best if best > 0 else 0.0,
        )
        if confidence > 0:
            vouched = (
                {cid: max(score, 0.0) / best for cid, score in keyword_hits} if best > 0 else {}
            )
            penalty = confidence * fusion.language_penalty
            vector = sorted(
                (
                    (hit.chunk_id, hit.score - penalty * (1.0 - vouched.get(hit.chunk_id, 0.0)))
                    if in_own[hit.chunk_id]
                    else (hit.chunk_id, hit.score)
                    for hit in vector_hits
                ),
                key=lambda pair: -pair[1],
            )
            # BM25's matches in the query's own language (and those the vector leg did not
            # return) are noise when the answer is in the other language; its matches in the
            # other language (a name, a code) are not.
            keyword = [
                (cid, score * (1.0 - confidence)) if in_own.get(cid, True) else (cid, score)
                for cid, score in keyword_hits
            ]
    vector = vector[: query.fetch]  # the reserve beyond served only the penalty
    fused = score_fusion(vector, keyword, keyword_weight=fusion.keyword_weight, keyword_best=best)
    return fused[: query.k]


def to_hits(
    ranked: Sequence[tuple[str, float]],
    vector_hits: Sequence[VectorHit],
    keyword_hits: Sequence[tuple[str, float]],
    hydrated: Mapping[str, VectorHit],
    *,
    relevant: bool,
) -> list[SearchHit]:
    """The ranked chunks as hits: text and metadata from ``hydrated`` (the registry) or Chroma.

    A ranked id found in neither was deleted between the two legs and is skipped.
    """
    by_vector = {hit.chunk_id: hit for hit in vector_hits}
    by_keyword = dict(keyword_hits)
    hits: list[SearchHit] = []
    for chunk_id, score in ranked:
        found = hydrated.get(chunk_id) or by_vector.get(chunk_id)
        if found is None:
            continue
        hits.append(
            SearchHit(
                document_id=str(found.metadata.get("document_id", "")),
                chunk_id=chunk_id,
                text=found.text,
                score=round(float(score), 6),
                metadata=found.metadata,
                vector_score=by_vector[chunk_id].score if chunk_id in by_vector else None,
                keyword_score=by_keyword.get(chunk_id),
                relevant=relevant,
            )
        )
    return hits
