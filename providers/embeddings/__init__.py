"""Embedding models behind one interface: the embedded local engines and OpenAI's.

One module per job, re-exported here (callers import from ``providers.embeddings``):
``registry`` resolves model names and builds the embedders, ``local_engines`` holds the
in-process engines (e5, USE, both side by side), ``lean_query`` the OpenAI query path that
skips the SDK, and ``usage`` the tally that captures the tokens OpenAI reports.
"""

from __future__ import annotations

from providers.embeddings.lean_query import LeanQueryOpenAIEmbeddings
from providers.embeddings.local_engines import (
    E5USE_E5_WEIGHT,
    LOCAL_DIMENSIONS,
    E5Embeddings,
    E5UseEmbeddings,
    UseEmbeddings,
)
from providers.embeddings.registry import (
    DEFAULT_OPENAI_DIMENSION,
    LOCAL_ALIAS,
    OPENAI_DIMENSIONS,
    EmbeddingRegistry,
    EmbeddingSpec,
    UnknownEmbeddingModel,
)
from providers.embeddings.usage import UsageTally, measure_usage

__all__ = [
    "DEFAULT_OPENAI_DIMENSION",
    "E5USE_E5_WEIGHT",
    "LOCAL_ALIAS",
    "LOCAL_DIMENSIONS",
    "OPENAI_DIMENSIONS",
    "E5Embeddings",
    "E5UseEmbeddings",
    "EmbeddingRegistry",
    "EmbeddingSpec",
    "LeanQueryOpenAIEmbeddings",
    "UnknownEmbeddingModel",
    "UsageTally",
    "UseEmbeddings",
    "measure_usage",
]
