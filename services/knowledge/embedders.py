"""The org's embedders for knowledge work: its own key, accounted, counted against limits."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from accounting.accountant import Accountant
from accounting.embeddings import AccountedEmbeddings
from accounting.events import CallContext
from core.errors import ApiError
from limits.enforcer import LimitEnforcer
from providers.embeddings import EmbeddingRegistry, EmbeddingSpec, UnknownEmbeddingModel
from providers.keys import ProviderKeyStore


class KnowledgeEmbedders:
    """Embedding specs and accounted embedders, resolved with the org's provider key."""

    def __init__(
        self,
        *,
        embeddings: EmbeddingRegistry,
        accountant: Accountant,
        provider_keys: ProviderKeyStore,
        limits: LimitEnforcer,
    ) -> None:
        self._embeddings = embeddings
        self._accountant = accountant
        self._keys = provider_keys
        self._limits = limits

    async def spec(self, org_id: str, name: str | None) -> EmbeddingSpec:
        """The model ``name`` (None: the default) as the org may use it (400 if unknown)."""
        org_key = await self._keys.get(org_id, "openai")
        try:
            return self._embeddings.spec(name, org_key=org_key)
        except UnknownEmbeddingModel as exc:
            raise ApiError(400, "unknown_embedding_model", str(exc)) from exc

    async def embedder(self, org_id: str, model: str, context: CallContext) -> Embeddings:
        """The collection's embedder, accounted to ``context``, with the org's own key.

        Its usage counts against the caller's limits: settling the request's hold, or, for
        background work (ingestion, re-embedding), added as it comes.
        """
        context = await self._limits.tab(context)
        org_key = await self._keys.get(org_id, "openai")
        try:
            spec = self._embeddings.spec(model, org_key=org_key)
            inner = self._embeddings.embeddings(model, org_key=org_key)
        except UnknownEmbeddingModel as exc:
            raise ApiError(400, "unknown_embedding_model", str(exc)) from exc
        return AccountedEmbeddings(inner, spec=spec, accountant=self._accountant, context=context)
