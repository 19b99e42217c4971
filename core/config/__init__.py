"""The one settings object of the service.

Every knob is an environment variable with the ``AHC_`` prefix (or a line in ``.env``);
the usual provider variables (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``) work too. The
object is built once (``get_settings``/``create_app(settings)``) and injected; code
never reads the environment itself.

The fields are declared by area, one module each (``core/config/storage.py``,
``core/config/knowledge.py``...), as plain pydantic models that ``Settings`` inherits:
the environment is read in one place, here, and code sees one ``Settings``. Checks that
span two areas live on ``Settings``.
"""

from __future__ import annotations

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.config.accounting import AccountingSettings
from core.config.auth import AuthSettings
from core.config.batch import BatchSettings
from core.config.cache import ResponseCacheSettings
from core.config.hardening import HardeningSettings
from core.config.jobs import JobSettings
from core.config.knowledge import KnowledgeSettings
from core.config.knowledge_search import KnowledgeSearchSettings
from core.config.limits import LimitSettings
from core.config.local_model import LocalModelSettings
from core.config.memory import ChatMemorySettings
from core.config.observability import ObservabilitySettings
from core.config.process import ProcessSettings
from core.config.providers import ProviderSettings
from core.config.rerank import RerankSettings
from core.config.speech import SpeechSettings
from core.config.storage import StorageSettings

__all__ = ["Settings"]


class Settings(
    # pydantic orders the fields from the last base to the first: the areas are listed
    # bottom-up so that model_fields (dumps, error lists) reads storage first, as before.
    ObservabilitySettings,
    ProcessSettings,
    HardeningSettings,
    BatchSettings,
    SpeechSettings,
    JobSettings,
    RerankSettings,
    KnowledgeSearchSettings,
    KnowledgeSettings,
    ResponseCacheSettings,
    LimitSettings,
    AccountingSettings,
    ChatMemorySettings,
    LocalModelSettings,
    ProviderSettings,
    AuthSettings,
    StorageSettings,
    BaseSettings,
):
    """Service configuration (see ``.env.example`` for every variable)."""

    model_config = SettingsConfigDict(
        env_prefix="AHC_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,  # Settings(openai_organization=...) as well as the env aliases
    )

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
    def knowledge_search_turns(self) -> int:
        """``knowledge_search_concurrency`` resolved: unset is 2 with embedded Chroma, else 0."""
        if self.knowledge_search_concurrency is not None:
            return self.knowledge_search_concurrency
        return 0 if self.chroma_url else 2

    def context_window(self, model: str) -> int:
        """Tokens the named model can read; the local model's window is its n_ctx."""
        if model == self.local_model_name:
            return self.local_model_context
        return self.context_windows.get(model, self.default_context_window)
