"""Knowledge search settings: relevance bars, hybrid fusion and the keyword index's cache."""

from __future__ import annotations

from pydantic import BaseModel, Field


class KnowledgeSearchSettings(BaseModel):
    """When a search's hits count as relevant, how BM25 and vectors are fused, BM25's memory."""

    rag_min_similarity: dict[str, float] = Field(
        default={
            "local-e5use": 0.653,
            "local-use": 0.30,
            "local-e5": 0.85,
            "text-embedding-3-small": 0.30,
            "text-embedding-3-large": 0.30,
            "text-embedding-ada-002": 0.70,
        },
        description="Per embedding model: the similarity a search's best chunk must reach "
        "for RAG to answer from its hits (else it says it found nothing, with no model "
        "call), unless BM25 clears `rag_min_keyword_score`. The local models are "
        "calibrated with bench/rag_quality.py; the OpenAI values are uncalibrated guesses "
        "(ada-002's similarities are compressed, rarely below ~0.7). A model missing here "
        "has no bar. Setting the variable (JSON) replaces the whole table; a request's "
        "`min_similarity` overrides it.",
    )
    knowledge_keyword_weight: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Hybrid search: BM25's share of the fused score (each leg scaled to 0..1 "
        "within the search; the vector leg has the rest), shrunk towards 0 as the search "
        "grows sure the question is cross-lingual (BM25 matches only the query's language). "
        "See bench/rag_quality.py.",
    )
    knowledge_language_penalty: dict[str, float] = Field(
        default={"local-e5use": 0.1, "local-e5": 0.05, "local-use": 0.05},
        description="Per embedding model: the most similarity taken off chunks written in the "
        "query's own script (Hangul or Latin) before a hybrid search fuses its legs, against "
        "the multilingual embedders' bias towards the query's language (cross-lingual "
        "questions). Scaled by how sure the search is that the answer is in the other "
        "language (which language's best hits stand out) and waived for the chunks BM25 "
        "ranks high. A model missing here has none. See bench/rag_quality.py.",
    )
    knowledge_search_concurrency: int | None = Field(
        default=None,
        ge=0,
        description="Searches per process doing their CPU-bound part (Chroma's query, BM25, "
        "fusion) at once, admitted first come first served (0: no limit). Unset: 2 with "
        "embedded Chroma, no limit with a Chroma server (`chroma_url`), whose answer is a "
        "network wait a turn would hold. Queries are embedded before they queue, so a slow "
        "provider holds no one up. Taking turns keeps the throughput and cuts the tail under "
        "load, since a search no longer shares the core with every other one in flight; 2 "
        "lets one search's database or Chroma wait overlap another's work (bench/rag.py ×10 "
        "rows: 1 and 3 were worse).",
    )
    knowledge_keyword_cache_postings: int = Field(
        default=20_000_000,
        ge=0,
        description="Keyword search: postings of common terms each process keeps in memory "
        "(8 bytes each: 20M is at most ~160 MB), least recently used out. Rare terms are "
        "read from SQL each time.",
    )
    knowledge_keyword_warm_postings: int = Field(
        default=8_000_000,
        ge=0,
        description="Keyword search: after a collection's first search in a process, read "
        "the most frequent terms' postings into memory in the background, up to this many "
        "(8 bytes each; capped by `knowledge_keyword_cache_postings`; 0: no warming). "
        "Their first read is what made the first searches of a large collection slow.",
    )
    rag_min_keyword_score: float = Field(
        default=1.0,
        ge=0,
        description="Hybrid search: the best chunk's BM25, in units of one query term found "
        "in a single chunk (idf(N, 1) * (k1 + 1)), from which a search counts as relevant "
        "whatever its similarity. See bench/rag_quality.py.",
    )
    rag_min_keyword_score_by_model: dict[str, float] = Field(
        default={"local-e5use": 1.2},
        description="Per embedding model, a `rag_min_keyword_score` of its own (calibrated "
        "with its similarity bar in bench/rag_quality.py); other models use the default.",
    )
    rag_min_keyword_score_keyword_mode: float = Field(
        default=0.6,
        ge=0,
        description="The same bar for keyword-only searches, which have no similarity.",
    )
