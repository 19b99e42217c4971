"""Rerank settings: the optional rerank stage of searches (services.knowledge.rerank)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from core.config.fields import OptionalSecret


class RerankSettings(BaseModel):
    """The LLM judge or rerank endpoint that reorders a search's best hits."""

    knowledge_rerank_default: bool = Field(
        default=False,
        description="Rerank every knowledge search and RAG retrieval that does not say "
        "(`rerank` in the request body: false opts out). Needs a provider: an OpenAI key "
        "(the judge) or `knowledge_rerank_url`.",
    )
    knowledge_rerank_model: str | None = Field(
        default=None,
        description="What `rerank: true` uses: a chat model (the LLM judge) or one of "
        "`knowledge_rerank_models` (the rerank endpoint). Unset: the endpoint's first model "
        "when one is configured, else the default chat model unless it is the embedded one.",
    )
    knowledge_rerank_candidates: int = Field(
        default=10,
        ge=1,
        le=50,
        description="How many of the search's best hits the rerank stage judges (at least k).",
    )
    knowledge_rerank_min_grade: int = Field(
        default=2,
        ge=0,
        le=3,
        description="The LLM judge's grade (0 unrelated, 1 on topic, 2 partly answers, 3 "
        "answers) from which a hit counts as relevant; a search with none is not answered.",
    )
    knowledge_rerank_passage_chars: int = Field(
        default=1500,
        ge=100,
        le=20_000,
        description="Characters of each candidate the judge reads (bounds the prompt).",
    )
    knowledge_rerank_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        description="A rerank call still running after this falls back to the search's order.",
    )
    knowledge_rerank_url: str | None = Field(
        default=None,
        description="A rerank endpoint (`POST` `{model, query, documents, top_n}` → "
        "`{results: [{index, relevance_score}]}`: Cohere v2, Jina, vLLM, Infinity), the "
        "full URL, e.g. http://reranker:7997/rerank or https://api.jina.ai/v1/rerank.",
    )
    knowledge_rerank_api_key: OptionalSecret = Field(
        default=None, description="The rerank endpoint's bearer key (unset: none sent)."
    )
    knowledge_rerank_models: list[str] = Field(
        default=[],
        description="The model names the rerank endpoint serves (the first is its default).",
    )
    knowledge_rerank_min_score: float | None = Field(
        default=None,
        description="The endpoint's `relevance_score` from which a hit counts as relevant "
        "(its scale is the model's). Unset: the search's own relevance verdict stays.",
    )
