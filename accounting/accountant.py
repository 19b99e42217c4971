"""One object the flows ask for accounting: callbacks for LangChain, hooks for the relay."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.trace import Tracer

from accounting.callbacks import UsageCallbackHandler
from accounting.events import CallContext, UsageRecord
from accounting.pricing import PriceTable
from accounting.recorder import UsageRecorder
from core.metrics import observe_usage
from core.telemetry import record_model_call
from core.tokenizer import count_text_tokens
from providers.relay import RelayOutcome


class Accountant:
    """Prices calls and hands their events to the recorder."""

    def __init__(
        self,
        recorder: UsageRecorder,
        prices: PriceTable,
        provider_of: Callable[[str], str],
        *,
        enabled: bool = True,
        tracer: Tracer | None = None,
    ) -> None:
        self.enabled = enabled
        self._tracer = tracer
        self.recorder = recorder
        self.prices = prices
        self._provider_of = provider_of

    def record(self, context: CallContext, record: UsageRecord) -> None:
        """Write the event, and settle the request's limit reservation with it.

        Every entry point's model calls end here, so this is where they are counted for
        ``/metrics`` too (once each, whichever path made them).
        """
        observe_usage(
            org_id=record.org_id,
            model=record.model,
            provider=record.provider,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            cost_usd=record.cost_usd,
            latency_ms=record.latency_ms,
            cached=record.cached,
            status=record.status,
            error_code=record.error_code,
        )
        if self._tracer is not None:
            end = time.time_ns()
            record_model_call(
                self._tracer,
                route=record.route,
                model=record.model,
                provider=record.provider,
                org_id=record.org_id,
                user_id=record.user_id,
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.completion_tokens,
                latency_ms=record.latency_ms,
                cached=record.cached,
                status=record.status,
                error_code=record.error_code,
                start_ns=end - record.latency_ms * 1_000_000,
                end_ns=end,
            )
        if not self.enabled:
            return
        self.recorder.record(record)
        if context.reservation is not None:
            context.reservation.account(
                record.total_tokens,
                record.cost_usd,
                audio_seconds=record.audio_seconds,
                characters=record.tts_characters,
            )

    def callback(self, context: CallContext) -> UsageCallbackHandler:
        """A LangChain callback accounting every model call of one request."""
        return UsageCallbackHandler(
            context,
            sink=lambda record: self.record(context, record),
            prices=self.prices,
            provider_of=self._provider_of,
        )

    def relay_done(
        self, context: CallContext, messages: Sequence[Any]
    ) -> Callable[[RelayOutcome], None]:
        """A hook turning a relayed call's outcome into its usage event."""

        def done(outcome: RelayOutcome) -> None:
            self.record(context, self._relay_record(context, outcome, messages))

        return done

    def relay_failed(self, context: CallContext, model: str, started: float, code: str) -> None:
        """Account a relayed call that failed before any token was produced."""
        self.record(
            context,
            UsageRecord.of(
                context,
                model=model,
                provider=self._provider_of(model),
                latency_ms=_elapsed_ms(started),
                status="error",
                error_code=code,
            ),
        )

    def cache_hit(self, context: CallContext, route: Any, started: float) -> None:
        """Account an answer served from the response cache: no tokens billed, no cost."""
        self.record(
            context,
            UsageRecord.of(
                context,
                model=route.name,
                provider=route.upstream.provider,
                latency_ms=_elapsed_ms(started),
                cached=True,
            ),
        )

    def _relay_record(
        self, context: CallContext, outcome: RelayOutcome, messages: Sequence[Any]
    ) -> UsageRecord:
        model = outcome.route.name
        usage = outcome.usage or {}
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        estimated = prompt is None or completion is None
        if estimated:
            # The stream ended before the provider's usage chunk (client gone, upstream
            # broke): estimate rather than under-count. One content chunk ≈ one token.
            text = " ".join(str(getattr(m, "content", None) or "") for m in messages)
            prompt = count_text_tokens(text, model) + 3 * len(messages)
            completion = outcome.content_chunks
        return UsageRecord.of(
            context,
            model=model,
            provider=outcome.route.upstream.provider,
            prompt_tokens=int(prompt or 0),
            completion_tokens=int(completion or 0),
            estimated=estimated,
            cost_usd=self.prices.cost(model, int(prompt or 0), int(completion or 0)),
            latency_ms=_elapsed_ms(outcome.started),
            status="ok" if outcome.error is None else "error",
            error_code=outcome.error,
        )


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
