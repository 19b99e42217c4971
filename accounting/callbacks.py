"""The LangChain callback that accounts every chat model call of the graphs and chains.

Attached per request (REST memory path, LangServe's config modifier), it turns
``on_chat_model_start``/``on_llm_end``/``on_llm_error`` into one :class:`UsageRecord`:
tokens from the provider's usage, estimated with tiktoken (and marked so) only when the
provider reports none. It never raises into the call it observes.

A call whose client went away (its stream cancelled or closed, or abandoned by the
service: :meth:`UsageCallbackHandler.abandon`) was still billed for what the provider
produced until then: it is recorded ``ok`` with the prompt and the delivered chunks
(one chunk ≈ one token), ``estimated``, like the relay's abandoned streams.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, GenerationChunk, LLMResult

from accounting.events import CallContext, UsageRecord
from accounting.pricing import PriceTable
from core.tokenizer import count_message_tokens, count_text_tokens

logger = logging.getLogger(__name__)

Sink = Callable[[UsageRecord], None]
ProviderOf = Callable[[str], str]


_ABANDONED = (asyncio.CancelledError, GeneratorExit)
"""What a call raises when its consumer stops it: the client left, not the provider failed."""


@dataclass(slots=True)
class _Call:
    """A model call in flight."""

    started: float
    model: str
    prompt: list[BaseMessage]
    chunks: int = 0
    """Streamed chunks with content so far (what was delivered if the call is abandoned)."""
    reported: tuple[int, int] | None = field(default=None)
    """Provider usage seen in a streamed chunk (the last chunk of a stream carries it)."""


class UsageCallbackHandler(BaseCallbackHandler):
    """Records one usage event per model call made under this handler."""

    run_inline = True  # called on the event loop, not in a thread: it only appends
    raise_error = False

    def __init__(
        self, context: CallContext, *, sink: Sink, prices: PriceTable, provider_of: ProviderOf
    ) -> None:
        self._context = context
        self._sink = sink
        self._prices = prices
        self._provider_of = provider_of
        self._calls: dict[UUID, _Call] = {}

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Remember when and with which model the call started."""
        meta = metadata or {}
        model = str(meta.get("model") or meta.get("ls_model_name") or "unknown")
        self._calls[run_id] = _Call(time.perf_counter(), model, messages[0] if messages else [])

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        """Count a streamed chunk (a counter increment: this runs once per token)."""
        call = self._calls.get(run_id)
        if call is None:
            return
        if token:
            call.chunks += 1
        message = getattr(chunk, "message", None)
        if (meta := getattr(message, "usage_metadata", None)) and meta.get("output_tokens"):
            call.reported = (int(meta["input_tokens"]), int(meta["output_tokens"]))

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Account a finished call."""
        call = self._calls.pop(run_id, None)
        if call is None:
            return
        generation = response.generations[0][0] if response.generations else None
        usage = _usage(response, generation)
        estimated = usage is None
        if usage is None:
            text = generation.text if generation is not None else ""
            usage = (
                count_message_tokens(call.prompt, call.model),
                count_text_tokens(text, call.model),
            )
        self._emit(call.model, call.started, usage, estimated=estimated)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Account a failed call (no tokens billed), or a stopped one (what it delivered)."""
        call = self._calls.pop(run_id, None)
        if call is None:
            return
        if isinstance(error, _ABANDONED):
            self._emit_abandoned(call)
            return
        code = type(error).__name__
        self._emit(
            call.model, call.started, (0, 0), estimated=False, status="error", error_code=code
        )

    def abandon(self) -> None:
        """Account the calls still running as abandoned (the service stopped their run).

        For a run cancelled from outside whose model call never reported its end or
        error; calls already accounted are not counted twice.
        """
        calls, self._calls = self._calls, {}
        for call in calls.values():
            self._emit_abandoned(call)

    def _emit_abandoned(self, call: _Call) -> None:
        """The prompt and the delivered chunks, estimated (the provider's usage never came)."""
        if call.reported is not None:
            self._emit(call.model, call.started, call.reported, estimated=False)
            return
        prompt = count_message_tokens(call.prompt, call.model)
        self._emit(call.model, call.started, (prompt, call.chunks), estimated=True)

    def _emit(
        self,
        model: str,
        started: float,
        usage: tuple[int, int],
        *,
        estimated: bool,
        status: str = "ok",
        error_code: str | None = None,
    ) -> None:
        try:
            self._sink(
                UsageRecord.of(
                    self._context,
                    model=model,
                    provider=self._provider_of(model),
                    prompt_tokens=usage[0],
                    completion_tokens=usage[1],
                    estimated=estimated,
                    cost_usd=self._prices.cost(model, *usage),
                    latency_ms=round((time.perf_counter() - started) * 1000),
                    status=status,
                    error_code=error_code,
                )
            )
        except Exception:  # accounting must never break the call it observes
            logger.exception("could not record a usage event")


def abandon_calls(callbacks: Any) -> None:
    """Account the model calls still running under ``callbacks`` (a run's) as abandoned.

    For a service that cancelled the run: a model call cancelled inside LangChain's
    ``agenerate`` reports neither its end nor its error.
    """
    handlers = getattr(callbacks, "handlers", callbacks) or []
    for handler in handlers:
        if isinstance(handler, UsageCallbackHandler):
            handler.abandon()


def _usage(response: LLMResult, generation: Any) -> tuple[int, int] | None:
    """Provider-reported (prompt, completion) tokens, if any."""
    if isinstance(generation, ChatGeneration):
        meta = getattr(generation.message, "usage_metadata", None)
        if meta and (meta.get("input_tokens") or meta.get("output_tokens")):
            return int(meta["input_tokens"]), int(meta["output_tokens"])
    token_usage = (response.llm_output or {}).get("token_usage") or {}
    if token_usage.get("prompt_tokens") is not None:
        return int(token_usage["prompt_tokens"]), int(token_usage.get("completion_tokens", 0))
    return None
