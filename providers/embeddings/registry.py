"""The registry: resolves embedding model names and builds their embedders.

A collection stores the concrete model that embedded it (``local-e5``, ``local-use``,
``text-embedding-3-small``...), because vectors of different models never mix. ``local`` is
an alias for the configured engine (``AHC_LOCAL_EMBEDDING_ENGINE``), resolved when a
collection is created. OpenAI models are offered only with a key: the service's, or the
calling organization's own (bring your own key).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
from langchain_core.embeddings import Embeddings
from langchain_openai import OpenAIEmbeddings
from pydantic import SecretStr

from core.config import Settings
from providers.embeddings.lean_query import LeanQueryOpenAIEmbeddings, _Sessions
from providers.embeddings.local_engines import (
    _LOCAL_ENGINES,
    LOCAL_DIMENSIONS,
    E5UseEmbeddings,
    _LocalEmbeddings,
)
from providers.embeddings.usage import _ausage_hook, _usage_hook

LOCAL_ALIAS = "local"
OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
DEFAULT_OPENAI_DIMENSION = 1536  # a configured model missing from the table above
_MAX_CLIENTS = 256  # (model, key) pairs kept: many orgs' keys over time


@dataclass(frozen=True, slots=True)
class EmbeddingSpec:
    """A resolved embedding model: what a collection records about its vectors."""

    name: str
    provider: str  # "local" | "openai"
    dimension: int


class UnknownEmbeddingModel(ValueError):
    """The model is not configured, or needs an OpenAI key nobody has (names the known ones)."""


class EmbeddingRegistry:
    """Resolves embedding model names and builds (once per model and key) their embedders."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._local: dict[str, _LocalEmbeddings | E5UseEmbeddings] = {}
        self._openai: dict[tuple[str, str], OpenAIEmbeddings] = {}
        self._http: tuple[Any, Any] | None = None  # (sync, async) pools every embedder shares
        self._lean = _Sessions()  # the lean query path's (see its module, lean_query)
        self._lock = threading.Lock()

    @property
    def local_default(self) -> str:
        """What ``local`` stands for: the configured engine."""
        return f"local-{self._settings.local_embedding_engine}"

    def known(self, *, org_key: str | None = None) -> list[str]:
        """Every name a collection may be created with (OpenAI's only with a key)."""
        names = [LOCAL_ALIAS, *LOCAL_DIMENSIONS]
        if self._api_key(org_key) is not None:
            names.extend(self._settings.openai_embedding_models)
        return names

    def spec(self, name: str | None = None, *, org_key: str | None = None) -> EmbeddingSpec:
        """Resolve ``name`` (None: ``AHC_EMBEDDING_MODEL``; ``local``: the configured engine)."""
        model = name or self._settings.embedding_model
        if model == LOCAL_ALIAS:
            model = self.local_default
        if model in LOCAL_DIMENSIONS:
            return EmbeddingSpec(model, "local", LOCAL_DIMENSIONS[model])
        known = ", ".join(self.known(org_key=org_key))
        if model not in self._settings.openai_embedding_models:
            raise UnknownEmbeddingModel(f"unknown embedding model '{model}'; known: {known}")
        if self._api_key(org_key) is None:
            raise UnknownEmbeddingModel(
                f"embedding model '{model}' needs an OpenAI key (neither the service nor the "
                f"organization has one); known: {known}"
            )
        return EmbeddingSpec(
            model, "openai", OPENAI_DIMENSIONS.get(model, DEFAULT_OPENAI_DIMENSION)
        )

    def embeddings(self, name: str | None = None, *, org_key: str | None = None) -> Embeddings:
        """The embedder of ``name``; OpenAI's with ``org_key`` when given, else the service key."""
        spec = self.spec(name, org_key=org_key)
        settings = self._settings
        if spec.provider == "local":
            with self._lock:
                local = self._local.get(spec.name)
                if local is None:
                    local = self._local[spec.name] = _LOCAL_ENGINES[spec.name](
                        threads=settings.local_embedding_threads,
                        batch_size=settings.embedding_batch_size,
                    )
            return local
        key = self._api_key(org_key)
        assert key is not None  # spec() refused the model otherwise
        with self._lock:
            model = self._openai.get((spec.name, key))
            if model is None:
                if len(self._openai) >= _MAX_CLIENTS:
                    self._openai.pop(next(iter(self._openai)))  # in-flight calls keep theirs
                model = self._openai[(spec.name, key)] = self._build_openai(
                    spec.name, key, own_key=bool(org_key)
                )
        return model

    async def aclose(self) -> None:
        """Close the OpenAI embedders' connection pools (at shutdown)."""
        with self._lock:
            http, self._http, self._openai = self._http, None, {}
        if http is not None:
            http[0].close()
            await http[1].aclose()
        await self._lean.aclose()

    def _api_key(self, org_key: str | None) -> str | None:
        """The key OpenAI calls would use: the org's own, else the service's, else None."""
        if org_key:
            return org_key
        service = self._settings.openai_api_key
        return service.get_secret_value() if service is not None else None

    def _clients(self) -> tuple[Any, Any]:
        """The connection pools (sync, async) of every OpenAI embedder; called under the lock.

        One pair per registry, whatever the model or key (the key travels per request), closed
        by :meth:`aclose`: evicted embedders leave no pool behind.
        """
        if self._http is None:
            timeout = self._settings.upstream_timeout_seconds
            self._http = (
                openai.DefaultHttpxClient(timeout=timeout, event_hooks={"response": [_usage_hook]}),
                # The SDK's aiohttp transport: measured here, ~0.5 ms less p50 and CPU per
                # query embedding than its httpx one (the search path's largest piece).
                openai.DefaultAioHttpClient(
                    timeout=timeout, event_hooks={"response": [_ausage_hook]}
                ),
            )
        return self._http

    def _build_openai(self, model: str, key: str, *, own_key: bool) -> OpenAIEmbeddings:
        """An ``OpenAIEmbeddings`` whose clients report usage to :func:`measure_usage`."""
        settings = self._settings
        sync_http, async_http = self._clients()
        embeddings = LeanQueryOpenAIEmbeddings(
            model=model,
            openai_api_key=SecretStr(key),
            openai_api_base=settings.openai_base_url,
            # The service's OpenAI organization does not own an org's own key.
            openai_organization=None if own_key else settings.openai_organization,
            request_timeout=settings.upstream_timeout_seconds,
            max_retries=settings.upstream_max_retries,
            chunk_size=settings.embedding_batch_size,
            # True would tokenize with tiktoken and send token ids: plain strings instead.
            check_embedding_ctx_length=False,
            openai_proxy=None,  # not from the environment: it conflicts with http_client
            openai_api_type=None,
            http_client=sync_http,
            http_async_client=async_http,
        )
        if settings.lean_query_embeddings:
            embeddings._session = self._lean.get
            embeddings._proxy = self._lean.proxy
            embeddings._timeout = aiohttp.ClientTimeout(total=settings.upstream_timeout_seconds)
        return embeddings
