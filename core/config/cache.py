"""Response cache settings: how long answers are reused, and rephrased-repeat matching."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ResponseCacheSettings(BaseModel):
    """Cached answers' lifetime and the semantic (embedding) cache."""

    cache_ttl_seconds: float = Field(
        default=3600, gt=0, description="How long a cached answer is served."
    )
    semantic_cache_enabled: bool = Field(
        default=False,
        description="Also answer rephrased repeats (embedding similarity) from the cache.",
    )
    semantic_cache_threshold: float = Field(
        default=0.95, gt=0, le=1, description="Cosine similarity from which a question repeats."
    )
    semantic_cache_embedding_model: str = Field(
        default="local-use",
        description="Embedding model of the semantic cache (USE: ~1 ms per question; the "
        "threshold is calibrated for it).",
    )
