"""Embeddings that account for themselves: one usage event per embedding call.

Wraps any LangChain ``Embeddings`` (local or OpenAI) for one request or job. Tokens come
from the provider's ``usage`` when every response reported it (OpenAI, captured by the
registry's HTTP hook); otherwise they are counted with tiktoken and the event says
``estimated`` (always for local models, which cost nothing). A failed call is recorded with
``status="error"`` and the tokens the provider reported for the batches that did go through
(those were billed), then the error propagates. Accounting never breaks the call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from langchain_core.embeddings import Embeddings

from accounting.accountant import Accountant
from accounting.events import CallContext, UsageRecord
from core.tokenizer import count_text_tokens
from providers.embeddings import EmbeddingSpec, UsageTally, measure_usage

logger = logging.getLogger(__name__)

ESTIMATE_ENCODING_MODEL = "text-embedding-3-small"  # cl100k_base, what OpenAI would bill
T = TypeVar("T")


class AccountedEmbeddings(Embeddings):
    """An embedder bound to one call context; every call becomes one usage event."""

    def __init__(
        self,
        inner: Embeddings,
        *,
        spec: EmbeddingSpec,
        accountant: Accountant,
        context: CallContext,
    ) -> None:
        self.inner = inner
        self.spec = spec
        self._accountant = accountant
        self._context = context
        self.prompt_tokens = 0
        """The prompt tokens of the calls so far, as accounted (the provider's, or estimated)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages, accounted."""
        return self._call(texts, lambda: self.inner.embed_documents(texts))

    def embed_query(self, text: str) -> list[float]:
        """Embed a query, accounted."""
        return self._call([text], lambda: self.inner.embed_query(text))

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages, accounted (async)."""
        return await self._acall(texts, lambda: self.inner.aembed_documents(texts))

    async def aembed_query(self, text: str) -> list[float]:
        """Embed a query, accounted (async)."""
        return await self._acall([text], lambda: self.inner.aembed_query(text))

    def _call(self, texts: Sequence[str], work: Callable[[], T]) -> T:
        started = time.perf_counter()
        with measure_usage() as tally:
            try:
                result = work()
            except Exception as exc:
                self._record(texts, tally, started, type(exc).__name__)
                raise
        self._record(texts, tally, started, None)
        return result

    async def _acall(self, texts: Sequence[str], work: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        with measure_usage() as tally:
            try:
                result = await work()
            except Exception as exc:
                self._record(texts, tally, started, type(exc).__name__)
                raise
        self._record(texts, tally, started, None)
        return result

    def _record(
        self, texts: Sequence[str], tally: UsageTally, started: float, error: str | None
    ) -> None:
        """Hand the call's event to the accountant; a failure here is logged, never raised."""
        try:
            event = self._event(texts, tally, started, error)
            self.prompt_tokens += event.prompt_tokens
            self._accountant.record(self._context, event)
        except Exception:
            logger.exception("could not account an embedding call (%s)", self.spec.name)

    def _event(
        self, texts: Sequence[str], tally: UsageTally, started: float, error: str | None
    ) -> UsageRecord:
        """The usage event: real tokens when the provider reported them all, else estimated."""
        if tally.complete or error is not None:
            prompt, estimated = tally.prompt_tokens, False
        else:
            prompt, estimated = estimate_tokens(texts), True
        return UsageRecord.of(
            self._context,
            model=self.spec.name,
            provider=self.spec.provider,
            prompt_tokens=prompt,
            completion_tokens=0,
            estimated=estimated,
            cost_usd=self._accountant.prices.cost(self.spec.name, prompt, 0),
            latency_ms=round((time.perf_counter() - started) * 1000),
            status="ok" if error is None else "error",
            error_code=error,
        )


def estimate_tokens(texts: Sequence[str]) -> int:
    """Tokens OpenAI would bill for ``texts`` (tiktoken, offline)."""
    return sum(count_text_tokens(text, ESTIMATE_ENCODING_MODEL) for text in texts)
