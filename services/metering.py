"""One metered model call: the org's key, the route, the call context, the limit hold.

Every entry point that calls a model goes through :class:`MeteringGate`, so none can forget
a step (a forgotten org key bills the service's key, silently):

1. :meth:`MeteringGate.resolve` resolves the requested model with the org's own provider key
   (cached by the key store), or raises the 400 naming the known models;
2. :meth:`MeteringGate.hold` reserves the call's worst case against the caller's limits
   (429 when over) and returns a :class:`MeteredCall`: the route, the context carrying the
   reservation, the reply cap to impose, the accounting callback and tracing metadata as a
   ready ``RunnableConfig``, and ``release``;
3. for a call without a reply (an embedding), :meth:`MeteringGate.hold_input` reserves its
   input's tokens and returns a :class:`MeteredInput`, whose embedder accounts the call
   (``accounting.embeddings.AccountedEmbeddings``) and settles the hold with its usage;
   another call without a reply (a rerank endpoint) settles it with
   :meth:`MeteredInput.record`;
4. calls priced by their caller rather than in tokens (speech: audio seconds, characters)
   use :meth:`MeteringGate.hold_priced` and :meth:`MeteredCall.record`.

The route travels explicitly to the graphs and chains in ``configurable["model_route"]``
(a :class:`ModelRoute` object, never the key as a string: LangChain and LangGraph copy
primitive configurable values into trace and checkpoint metadata); their model factory is
``ModelRegistry.chat_model``. The relay path (no LangChain) uses the same call's relay
hooks instead of the callback.

A :class:`MeteredCall` is an async context manager that releases the hold on exit (a no-op
once the call's usage settled it). A stream keeps the hold open by not entering it and
calling :meth:`MeteredCall.release` when the stream ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, cast

from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableConfig
from langchain_openai import ChatOpenAI

from accounting.accountant import Accountant
from accounting.embeddings import AccountedEmbeddings
from accounting.events import CallContext, UsageRecord
from auth.tokens import Principal
from core.tracing import run_metadata
from limits.enforcer import Amounts, LimitEnforcer
from providers.embeddings import EmbeddingSpec
from providers.keys import ProviderKeyStore
from providers.registry import ModelRegistry, ModelRoute
from providers.relay import OutcomeHook
from services.gateway_types import ChatRequest

MODEL_ROUTE = "model_route"
"""The ``configurable`` key of the resolved :class:`ModelRoute` (read by the graphs)."""


class MeteringGate:
    """Resolves, holds and accounts model calls for every entry point."""

    def __init__(
        self,
        *,
        registry: ModelRegistry,
        provider_keys: ProviderKeyStore,
        limits: LimitEnforcer,
        accountant: Accountant,
    ) -> None:
        self.registry = registry
        self.accountant = accountant
        self._keys = provider_keys
        self._limits = limits

    async def org_key(self, org_id: str) -> str | None:
        """The org's own OpenAI key (None: the service's is used)."""
        return await self._keys.get(org_id, "openai")

    async def provider_key(self, org_id: str, provider: str) -> str | None:
        """The org's own key for any provider (``openai``, ``elevenlabs``), or None."""
        return await self._keys.get(org_id, provider)

    async def resolve(self, org_id: str, model: str | None) -> ModelRoute:
        """``model`` (None: the default) resolved with the org's own key when it has one."""
        return self.registry.resolve(model, org_key=await self._keys.get(org_id, "openai"))

    async def hold(
        self,
        principal: Principal,
        context: CallContext,
        route: ModelRoute,
        *,
        prompt: Callable[[], str],
        messages: int,
        reply_limit: int | None,
    ) -> MeteredCall:
        """Reserve the call against the caller's limits (429 when over).

        ``prompt`` gives the prompt's text (only computed when the caller has limits),
        ``messages`` their number, ``reply_limit`` the request's completion cap.
        """
        held, cap = await self._limits.hold(
            principal,
            context,
            model=route.name,
            prompt=prompt,
            messages=messages,
            reply_limit=reply_limit,
        )
        return MeteredCall(route=route, context=held, cap=cap, gate=self)

    async def hold_chat(
        self, principal: Principal, context: CallContext, route: ModelRoute, request: ChatRequest
    ) -> MeteredCall:
        """:meth:`hold` for a chat request: its prompt text (tools included), count, reply cap."""
        return await self.hold(
            principal,
            context,
            route,
            prompt=request.prompt_text,
            messages=len(request.messages),
            reply_limit=request.reply_limit,
        )

    async def hold_input(
        self,
        principal: Principal,
        context: CallContext,
        *,
        model: str,
        tokens: Callable[[], int],
    ) -> MeteredInput:
        """Reserve a call without a reply (an embedding) against the caller's limits (429).

        ``tokens`` gives the input's tokens (only computed when the caller has limits); the
        call's usage event settles the hold to the provider's count.
        """

        def size() -> tuple[int, Decimal]:
            count = tokens()
            return count, self.accountant.prices.cost(model, count, 0)

        held = await self._limits.hold_tokens(principal, context, size)
        return MeteredInput(context=held, gate=self)

    async def hold_priced(
        self,
        principal: Principal,
        context: CallContext,
        route: ModelRoute,
        cost: Callable[[], Decimal],
        *,
        audio_seconds: float = 0.0,
        characters: int = 0,
    ) -> MeteredCall:
        """Reserve a call priced by its caller, not in tokens (speech: seconds, characters).

        One request, ``cost()`` (computed only when the caller has limits) and the audio
        seconds or characters are held; the call's :meth:`MeteredCall.record` settles them.
        """

        def size() -> Amounts:
            return Amounts(cost=cost(), audio_seconds=audio_seconds, characters=characters)

        held = await self._limits.hold_amounts(principal, context, size)
        return MeteredCall(route=route, context=held, cap=None, gate=self)


@dataclass(slots=True)
class _Held:
    """A call's hold on the caller's limits, given back on exit unless its usage settled it."""

    context: CallContext
    """Who and where, carrying the limit reservation (settled by the call's usage)."""
    gate: MeteringGate

    def release(self) -> None:
        """Give the hold back (a no-op once the call's usage settled it)."""
        if self.context.reservation is not None:
            self.context.reservation.release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@dataclass(slots=True)
class MeteredInput(_Held):
    """One held call without a reply: for whom, and its accounted embedder."""

    def embeddings(self, inner: Embeddings, spec: EmbeddingSpec) -> AccountedEmbeddings:
        """``inner`` accounted to this call: each call one usage event, settling the hold."""
        return AccountedEmbeddings(
            inner, spec=spec, accountant=self.gate.accountant, context=self.context
        )

    def record(
        self,
        started: float,
        *,
        model: str,
        provider: str,
        tokens: int = 0,
        cost: Decimal = Decimal(0),
        error: str | None = None,
    ) -> None:
        """The call's one usage event (it settles the hold): its input tokens, or its error.

        For a call without a reply that is not an embedder's (a rerank endpoint).
        """
        self.gate.accountant.record(
            self.context,
            UsageRecord.of(
                self.context,
                model=model,
                provider=provider,
                prompt_tokens=tokens,
                cost_usd=cost,
                latency_ms=round((time.perf_counter() - started) * 1000),
                status="ok" if error is None else "error",
                error_code=error,
            ),
        )


@dataclass(slots=True)
class MeteredCall(_Held):
    """One held model call: what to call, for whom, with which cap; its accounting."""

    route: ModelRoute
    cap: int | None
    """The reply cap to send when the request set none (so the hold is a real bound)."""

    # -- LangChain --------------------------------------------------------------------
    def chat_model(self) -> ChatOpenAI:
        """The LangChain chat model calling this route (with the org's key)."""
        return self.gate.registry.chat_model_for(self.route)

    def configurable(self) -> dict[str, Any]:
        """The server's ``configurable`` keys: the route, who, where, and the hold's release."""
        context = self.context
        configurable: dict[str, Any] = {
            MODEL_ROUTE: self.route,
            "model": self.route.name,
            "org_id": context.org_id,
            "user_id": context.user_id,
            "route": context.route,
            "request_id": context.request_id,
        }
        if context.reservation is not None:
            # Gives the hold back when the run calls no model (RAG with nothing relevant).
            configurable["release_hold"] = context.reservation.release
        return configurable

    def runnable_config(
        self,
        configurable: Mapping[str, Any] | None = None,
        *,
        callbacks: Sequence[Any] = (),
        base: Mapping[str, Any] | None = None,
    ) -> RunnableConfig:
        """A ``RunnableConfig``: ``configurable`` then the server's keys, callbacks, tracing.

        ``base``: a client's config (LangServe) kept under the server's values; its tags
        and metadata are extended, its callbacks replaced.
        """
        trace = run_metadata(self.context)
        base = base or {}
        config = {
            **base,
            "configurable": {**(configurable or {}), **self.configurable()},
            "callbacks": [self.gate.accountant.callback(self.context), *callbacks],
            "metadata": {**(base.get("metadata") or {}), **trace["metadata"]},
            "tags": [*(base.get("tags") or []), *trace["tags"]],
            "run_name": trace["run_name"],
        }
        return cast(RunnableConfig, config)

    # -- the relay (no LangChain) -------------------------------------------------------
    def relay_done(self, messages: Sequence[Any]) -> OutcomeHook:
        """The hook turning the relayed call's outcome into its usage event."""
        return self.gate.accountant.relay_done(self.context, messages)

    def relay_failed(self, started: float, code: str) -> None:
        """Account a relayed call that failed before any token was produced."""
        self.gate.accountant.relay_failed(self.context, self.route.name, started, code)

    # -- calls priced by the caller (speech) ----------------------------------------------
    def record(
        self,
        started: float,
        *,
        cost: Decimal = Decimal(0),
        error: str | None = None,
        audio_seconds: float = 0.0,
        characters: int = 0,
    ) -> None:
        """The call's one usage event (it settles the hold): its price and size, or its error.

        A call that failed before the provider made anything passes no size (counts nothing).
        """
        self.gate.accountant.record(
            self.context,
            UsageRecord.of(
                self.context,
                model=self.route.name,
                provider=self.route.upstream.provider,
                cost_usd=cost,
                audio_seconds=audio_seconds,
                tts_characters=characters,
                latency_ms=round((time.perf_counter() - started) * 1000),
                status="ok" if error is None else "error",
                error_code=error,
            ),
        )
