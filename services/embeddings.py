"""The embeddings use case behind ``POST /api/embeddings`` (OpenAI's Embeddings API).

One code path with the knowledge base: the model resolves through the same
``EmbeddingRegistry`` with the org's own key (local engines offline, OpenAI's with a key),
batches the same way, runs local engines off the event loop, and is metered through the
gate (limits held on the input's tokens, one usage event on the route ``embeddings``
settling the hold). Token-id inputs are decoded with ``cl100k_base`` (the tokenizer of
OpenAI's embedding models), so every engine takes them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

from accounting.embeddings import ESTIMATE_ENCODING_MODEL, estimate_tokens
from accounting.events import CallContext
from auth.tokens import Principal
from core.errors import ApiError
from core.request_id import current_request_id
from core.tokenizer import encoding_for
from providers.embeddings import EmbeddingRegistry, EmbeddingSpec, UnknownEmbeddingModel
from providers.errors import upstream_errors
from services.gateway_types import EmbeddingInput, EmbeddingRequest
from services.metering import MeteringGate

MAX_INPUTS = 2048
"""OpenAI's cap on the inputs of one request."""
CONTEXT_TOKENS = 8191
"""Tokens of one input (OpenAI's embedding models; local engines window longer texts)."""
SHORTENABLE = frozenset({"text-embedding-3-small", "text-embedding-3-large"})
"""The models that take ``dimensions`` (trained to be shortened)."""
ROUTE = "embeddings"
_COUNT_INLINE_CHARS = 64_000  # above: count tokens in a worker thread


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    """The vectors of one request, in input order, and the tokens billed for them."""

    model: str
    vectors: list[list[float]]
    prompt_tokens: int


class EmbeddingService:
    """Embeds texts for a caller: checked, with the org's key, metered."""

    def __init__(self, *, gate: MeteringGate, registry: EmbeddingRegistry) -> None:
        self._gate = gate
        self._registry = registry

    async def embed(
        self, principal: Principal, request: EmbeddingRequest, *, flow: str = ROUTE
    ) -> EmbeddingResult:
        """Embed ``request.input`` (400 on bad input, 429 over a limit, 5xx upstream)."""
        texts = input_texts(request.input)
        org_key = await self._gate.org_key(principal.org_id)
        spec = self._spec(request.model, org_key)
        _check_dimensions(spec, request.dimensions)
        counts = await _token_counts(texts)
        for index, count in enumerate(counts):
            if count > CONTEXT_TOKENS:
                raise ApiError(
                    400,
                    "context_length_exceeded",
                    f"input[{index}]: {count} tokens, over the model's {CONTEXT_TOKENS}",
                    details={"param": "input"},
                )
        inner = self._registry.embeddings(spec.name, org_key=org_key)
        if request.dimensions is not None and request.dimensions != spec.dimension:
            inner = inner.model_copy(update={"dimensions": request.dimensions})  # type: ignore[attr-defined]
        context = CallContext.for_principal(principal, flow, request_id=current_request_id())
        held = await self._gate.hold_input(
            principal, context, model=spec.name, tokens=lambda: sum(counts)
        )
        async with held:
            embedder = held.embeddings(inner, spec)
            with upstream_errors(spec.provider):
                vectors = await embedder.aembed_documents(texts)
        return EmbeddingResult(spec.name, vectors, embedder.prompt_tokens)

    async def models(self, org_id: str) -> list[tuple[str, EmbeddingSpec]]:
        """The names the org may embed with (``GET /api/models``), each with its model."""
        org_key = await self._gate.org_key(org_id)
        return [
            (name, self._registry.spec(name, org_key=org_key))
            for name in self._registry.known(org_key=org_key)
        ]

    def _spec(self, model: str | None, org_key: str | None) -> EmbeddingSpec:
        """The model as the org may use it, or a 400 naming the known ones."""
        try:
            return self._registry.spec(model, org_key=org_key)
        except UnknownEmbeddingModel as exc:
            raise ApiError(400, "unknown_model", str(exc), details={"param": "model"}) from exc


def input_texts(value: EmbeddingInput) -> list[str]:
    """The texts of an ``input``: a text, texts, or token ids (decoded); 400 when unusable."""
    items: list[str | list[int]]
    if isinstance(value, str):
        items = [value]
    elif value and all(isinstance(v, int) for v in value):
        items = [cast(list[int], value)]  # the token ids of one text
    else:
        items = list(cast(list[str | list[int]], value))
    if not items:
        raise _invalid("input", "must not be empty")
    if len(items) > MAX_INPUTS:
        raise _invalid("input", f"at most {MAX_INPUTS} inputs per request, got {len(items)}")
    texts = []
    for index, item in enumerate(items):
        text = item if isinstance(item, str) else _decode(item, index)
        if not text:
            raise _invalid(f"input[{index}]", "must not be empty")
        texts.append(text)
    return texts


def _decode(tokens: list[int], index: int) -> str:
    """Token ids as text (``cl100k_base``)."""
    if not tokens:
        raise _invalid(f"input[{index}]", "must not be empty")
    try:
        return encoding_for(ESTIMATE_ENCODING_MODEL).decode(tokens)
    except (KeyError, ValueError, OverflowError, TypeError) as exc:
        raise _invalid(f"input[{index}]", "holds token ids the tokenizer does not know") from exc


def _check_dimensions(spec: EmbeddingSpec, dimensions: int | None) -> None:
    """``dimensions`` only where the model takes it, within its size."""
    if dimensions is None:
        return
    if spec.name not in SHORTENABLE:
        able = ", ".join(sorted(SHORTENABLE))
        raise ApiError(
            400,
            "unsupported_parameter",
            f"dimensions: model '{spec.name}' does not support it (models that do: {able})",
            details={"param": "dimensions"},
        )
    if not 1 <= dimensions <= spec.dimension:
        raise _invalid("dimensions", f"must be between 1 and {spec.dimension} for '{spec.name}'")


async def _token_counts(texts: list[str]) -> list[int]:
    """Tokens of each text (in a worker thread when the input is large)."""

    def count() -> list[int]:
        return [estimate_tokens([text]) for text in texts]

    if sum(len(text) for text in texts) > _COUNT_INLINE_CHARS:
        return await asyncio.to_thread(count)
    return count()


def _invalid(param: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request", f"{param}: {message}", details={"param": param})
