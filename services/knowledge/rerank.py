"""The optional rerank stage of a knowledge search: an LLM judge, or a rerank endpoint.

Off unless a request asks (``rerank: true`` or a model name on ``/api/knowledge/search`` and
``/api/knowledge/query``) or ``Settings.knowledge_rerank_default`` is on. The search's best
``knowledge_rerank_candidates`` hits go to one of two judges:

- **the LLM judge**: a chat model the org already uses (OpenAI-compatible, ``ChatOpenAI``
  through :class:`~services.metering.MeteringGate`, so the org's own key, its limits and its
  usage events apply as to any chat call) grades each passage 0..3 with structured output
  (:class:`~knowledge.rerank.RelevanceVerdict`). The grades reorder the candidates and
  decide relevance per hit: a search none of whose passages reaches
  ``knowledge_rerank_min_grade`` is the refusal signal (RAG answers "not found").
- **a rerank endpoint** (``knowledge_rerank_url``) speaking the de-facto wire protocol:
  ``POST {model, query, documents, top_n}`` → ``{results: [{index, relevance_score}],
  usage?}`` (Cohere v2, Jina, vLLM, Infinity; Voyage answers ``data`` instead of ``results``
  and is read too). A small httpx client: LangChain's ``JinaRerank`` has a fixed URL and a
  blocking ``requests`` session, ``CohereRerank`` needs the ``cohere`` SDK (which posts to
  ``/v2/rerank`` only) for one POST. Its call is held and accounted like an embedding: its
  ``usage.total_tokens`` (else our estimate of its input) on the org.

The stage is held against the caller's limits before the call (429 naming the limit). When
it fails (the provider's error, a timeout, an unreadable verdict), the search keeps its own
order and verdict and says so (``rerank.applied: false`` with the error's code); asking for it
without a provider is a 400 ``rerank_unavailable`` before any work is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import httpx
import openai
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI
from pydantic import ValidationError

from accounting.embeddings import estimate_tokens
from accounting.events import CallContext
from auth.tokens import Principal
from core.config import Settings
from core.errors import ApiError
from knowledge.rerank import (
    JUDGE_PROMPT,
    MAX_GRADE,
    RelevanceVerdict,
    grades_by_position,
    judge_passages,
    reorder,
    scores_from_results,
)
from knowledge.search import SearchHit
from providers.registry import ModelRoute
from services.metering import MeteringGate

logger = logging.getLogger(__name__)

RERANK_ROUTE = "knowledge.rerank"
"""The usage label of the rerank calls (``GET /api/usage`` by route)."""
ENDPOINT_PROVIDER = "rerank"
"""The provider name of the rerank endpoint's usage events."""


@dataclass(frozen=True, slots=True)
class Judge:
    """Who reranks a search: a chat model (the LLM judge) or the rerank endpoint's model."""

    model: str
    route: ModelRoute | None = None
    """The chat model's resolved route (the org's key); None: the rerank endpoint."""


@dataclass(frozen=True, slots=True)
class RerankOutcome:
    """What the rerank stage did: reordered (``applied``), or why it fell back."""

    model: str
    applied: bool
    error: str | None = None
    """The failure's code (``upstream_error``, ``upstream_timeout``, ``invalid_verdict``)."""
    message: str | None = None


class Reranker:
    """Chooses the judge of a search and runs it, metered; falls back on failure."""

    def __init__(self, *, settings: Settings, gate: MeteringGate) -> None:
        self._settings = settings
        self._gate = gate
        self._http: httpx.AsyncClient | None = None
        self._judges: dict[tuple[int, int], tuple[ChatOpenAI, Runnable]] = {}

    async def aclose(self) -> None:
        """Close the rerank endpoint's connection pool."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def candidates(self, k: int) -> int:
        """How many hits the search ranks for the judge: ``knowledge_rerank_candidates``, ≥ k."""
        return max(k, self._settings.knowledge_rerank_candidates)

    async def judge_for(self, org_id: str, requested: bool | str | None) -> Judge | None:
        """The judge a request asks for (None: no rerank), or the 400 saying why there is none.

        ``requested``: None the service's default, False off, True the default judge, or a
        model name (the endpoint's or a chat model).
        """
        settings = self._settings
        if requested is None:
            requested = settings.knowledge_rerank_default
        if requested is False:
            return None
        name = requested if isinstance(requested, str) else settings.knowledge_rerank_model
        if name is None and settings.knowledge_rerank_url:
            name = settings.knowledge_rerank_models[0]
        if name is not None and name in settings.knowledge_rerank_models:
            if not settings.knowledge_rerank_url:
                raise _unavailable(f"no rerank endpoint serves {name!r}")
            return Judge(model=name)
        registry = self._gate.registry
        if name is None and registry.owner(registry.default_model) == "local":
            raise _unavailable(
                "reranking needs a provider: set OPENAI_API_KEY (an LLM judge) or "
                "AHC_KNOWLEDGE_RERANK_URL (a rerank endpoint)"
            )
        route = await self._gate.resolve(org_id, name)
        if route.upstream.provider == "local":
            raise _unavailable(
                f"the embedded model {route.name!r} cannot judge relevance: name a provider's "
                "chat model or a rerank endpoint's model"
            )
        return Judge(model=route.name, route=route)

    async def rerank(
        self, context: CallContext, question: str, hits: list[SearchHit], judge: Judge, k: int
    ) -> tuple[list[SearchHit], RerankOutcome]:
        """The best ``k`` of ``hits`` by the judge, or the first ``k`` as they were if it failed.

        Raises only the 429 of a used-up limit (held before the call).
        """
        if not hits:
            return hits, RerankOutcome(model=judge.model, applied=True)
        context = replace(context, route=RERANK_ROUTE, reservation=None)
        principal = Principal(org_id=context.org_id, user_id=context.user_id)
        try:
            async with asyncio.timeout(self._settings.knowledge_rerank_timeout_seconds):
                if judge.route is not None:
                    reranked = await self._judge(principal, context, question, hits, judge, k)
                else:
                    reranked = await self._endpoint(principal, context, question, hits, judge, k)
        except ApiError:
            raise  # over a limit: the caller's 429
        except Exception as exc:
            code, message = _failure(exc)
            logger.warning("rerank by %s failed (%s): %s", judge.model, code, message)
            outcome = RerankOutcome(model=judge.model, applied=False, error=code, message=message)
            return hits[:k], outcome
        return reranked, RerankOutcome(model=judge.model, applied=True)

    async def _judge(
        self,
        principal: Principal,
        context: CallContext,
        question: str,
        hits: list[SearchHit],
        judge: Judge,
        k: int,
    ) -> list[SearchHit]:
        """The chat model's grades (one structured-output call, metered by the gate)."""
        assert judge.route is not None
        settings = self._settings
        messages = JUDGE_PROMPT.format_messages(
            question=question,
            passages=judge_passages(hits, settings.knowledge_rerank_passage_chars),
        )
        # {"passage": n, "grade": g} per candidate; one cap per service (a cached runnable)
        reply_cap = 32 + 16 * max(len(hits), settings.knowledge_rerank_candidates)
        call = await self._gate.hold(
            principal,
            context,
            judge.route,
            prompt=lambda: "\n".join(str(m.content) for m in messages),
            messages=len(messages),
            reply_limit=reply_cap,
        )
        async with call:
            structured = self._structured(call.chat_model(), reply_cap)
            verdict = await structured.ainvoke(messages, call.runnable_config())
        if not isinstance(verdict, RelevanceVerdict):
            raise _InvalidVerdict(f"the judge answered {type(verdict).__name__}")
        grades = grades_by_position(verdict, len(hits))
        return reorder(
            hits,
            [grade / MAX_GRADE for grade in grades],
            k=k,
            min_score=settings.knowledge_rerank_min_grade / MAX_GRADE,
        )

    async def _endpoint(
        self,
        principal: Principal,
        context: CallContext,
        question: str,
        hits: list[SearchHit],
        judge: Judge,
        k: int,
    ) -> list[SearchHit]:
        """The rerank endpoint's scores (held and accounted like an embedding call)."""
        settings = self._settings
        assert settings.knowledge_rerank_url is not None
        limit = settings.knowledge_rerank_passage_chars
        documents = [hit.text[:limit] for hit in hits]
        texts = [question, *documents]
        held = await self._gate.hold_input(
            principal, context, model=judge.model, tokens=lambda: estimate_tokens(texts)
        )
        async with held:
            started = time.perf_counter()
            try:
                response = await self._client().post(
                    settings.knowledge_rerank_url,
                    json={
                        "model": judge.model,
                        "query": question,
                        "documents": documents,
                        "top_n": len(documents),
                    },
                )
                response.raise_for_status()
                body = response.json()
            except Exception as exc:
                held.record(
                    started, model=judge.model, provider=ENDPOINT_PROVIDER, error=_failure(exc)[0]
                )
                raise
            tokens = _billed_tokens(body, default=estimate_tokens(texts))
            held.record(
                started,
                model=judge.model,
                provider=ENDPOINT_PROVIDER,
                tokens=tokens,
                cost=self._gate.accountant.prices.cost(judge.model, tokens, 0),
            )
        results = body.get("results", body.get("data")) if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise _InvalidVerdict("the rerank endpoint answered no results")
        scores = scores_from_results([r for r in results if isinstance(r, dict)], len(hits))
        return reorder(hits, scores, k=k, min_score=settings.knowledge_rerank_min_score)

    def _structured(self, model: ChatOpenAI, reply_cap: int) -> Runnable:
        """The judge's structured-output runnable over ``model`` (built once per model).

        Building it (a copy with the reply cap, the JSON schema) costs ~1 ms of CPU.
        """
        cached = self._judges.get((id(model), reply_cap))
        if cached is not None and cached[0] is model:
            return cached[1]
        if len(self._judges) >= 256:  # bounded: many orgs' keys over time
            self._judges.pop(next(iter(self._judges)))
        judge = model.model_copy(update={"max_tokens": reply_cap, "temperature": 0.0})
        structured = judge.with_structured_output(
            RelevanceVerdict, method="json_schema", strict=True
        )
        self._judges[(id(model), reply_cap)] = (model, structured)
        return structured

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            key = self._settings.knowledge_rerank_api_key
            headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
            self._http = httpx.AsyncClient(
                headers=headers, timeout=self._settings.upstream_timeout_seconds
            )
        return self._http


class _InvalidVerdict(Exception):
    """The judge answered something that is not a verdict."""


def _unavailable(message: str) -> ApiError:
    return ApiError(400, "rerank_unavailable", message)


def _failure(exc: BaseException) -> tuple[str, str]:
    """A failed rerank call's error code and message (for the response and the usage event)."""
    if isinstance(exc, TimeoutError):
        return "upstream_timeout", "the rerank call timed out"
    if isinstance(exc, openai.APIStatusError | httpx.HTTPStatusError):
        status = exc.response.status_code
        return "upstream_error", f"the rerank provider answered {status}"
    if isinstance(exc, openai.APIError | httpx.HTTPError):
        return "upstream_error", f"the rerank provider failed: {type(exc).__name__}"
    if isinstance(exc, _InvalidVerdict | ValidationError | ValueError | KeyError):
        return "invalid_verdict", f"the judge's answer could not be read: {exc}"[:300]
    return "rerank_failed", type(exc).__name__


def _billed_tokens(body: Any, *, default: int) -> int:
    """The endpoint's own count, ``usage.total_tokens`` (Jina, Infinity, vLLM, Voyage).

    Else ``default``, our estimate (Cohere bills search units, which are not tokens).
    """
    usage = body.get("usage") if isinstance(body, dict) else None
    if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
        return int(usage["total_tokens"])
    return default
