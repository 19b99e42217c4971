"""Embedding models: the local engines for real, OpenAI's through the fake upstream, accounting."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from decimal import Decimal
from typing import Any

import numpy as np
import openai
import pytest
from langchain_core.embeddings import Embeddings

from accounting.accountant import Accountant
from accounting.embeddings import AccountedEmbeddings, estimate_tokens
from accounting.events import CallContext, UsageRecord
from accounting.pricing import PriceTable
from core.config import Settings
from core.tokenizer import count_text_tokens
from providers.embeddings import (
    E5USE_E5_WEIGHT,
    E5Embeddings,
    E5UseEmbeddings,
    EmbeddingRegistry,
    EmbeddingSpec,
    UnknownEmbeddingModel,
    UseEmbeddings,
    lean_query,
    local_engines,
    measure_usage,
)
from tests.fakes.openai_server import FakeOpenAI

SEOUL = "서울은 대한민국의 수도이며 정치, 경제, 문화의 중심지이다. 한강이 도시를 가로지른다."
KIMCHI = "김치는 배추와 고춧가루로 만드는 한국의 전통 발효 음식이다. 겨울에 김장을 한다."
ENGLISH = "The mitochondria is the powerhouse of the cell and produces ATP."
QUERY = "대한민국의 수도는 어디인가요?"
OPENAI_MODEL = "text-embedding-3-small"


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "openai_api_key": None,
        "upstream_max_retries": 0,
        "local_embedding_engine": "e5",  # the tests below name e5 as `local`
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def openai_settings(fake: FakeOpenAI, **overrides: Any) -> Settings:
    return settings(openai_api_key="sk-service", openai_base_url=fake.base_url, **overrides)


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))  # every embedder here returns unit vectors


def embedding_requests(fake: FakeOpenAI) -> list[Any]:
    return [r for r in fake.requests if r.path == "/v1/embeddings"]


def words(texts: list[str]) -> int:
    """The fake upstream's usage rule: word tokens."""
    return sum(len(t.split()) for t in texts)


# --- local engines, for real -----------------------------------------------------------


@pytest.mark.parametrize(("engine", "dimension"), [("e5", 384), ("use", 512)])
def test_local_engine_embeds_normalized_and_finds_the_korean_passage(
    engine: str, dimension: int
) -> None:
    registry = EmbeddingRegistry(settings(local_embedding_engine=engine))
    embedder = registry.embeddings("local")
    assert isinstance(embedder, E5Embeddings if engine == "e5" else UseEmbeddings)
    passages = embedder.embed_documents([SEOUL, KIMCHI, ENGLISH])
    query = embedder.embed_query(QUERY)
    assert len(passages) == 3 and {len(v) for v in [*passages, query]} == {dimension}
    assert all(isinstance(x, float) for x in query)
    assert all(math.isclose(np.linalg.norm(v), 1.0, abs_tol=1e-5) for v in [*passages, query])
    seoul, kimchi, english = (cosine(query, p) for p in passages)
    assert seoul > kimchi and seoul > english
    assert embedder.embed_documents([]) == []


def test_e5_embeds_queries_and_passages_differently_and_use_does_not() -> None:
    e5 = EmbeddingRegistry(settings()).embeddings("local-e5")
    as_query, as_passage = e5.embed_query(SEOUL), e5.embed_documents([SEOUL])[0]
    assert 0.8 < cosine(as_query, as_passage) < 0.9999  # "query: " vs "passage: " prefix
    use = EmbeddingRegistry(settings()).embeddings("local-use")
    assert np.allclose(use.embed_query(SEOUL), use.embed_documents([SEOUL])[0], atol=1e-6)


@pytest.mark.parametrize("name", ["local-e5", "local-use"])
async def test_local_async_methods_match_the_sync_ones(name: str) -> None:
    embedder = EmbeddingRegistry(settings()).embeddings(name)
    texts = [SEOUL, KIMCHI]
    assert np.allclose(await embedder.aembed_documents(texts), embedder.embed_documents(texts))
    assert np.allclose(await embedder.aembed_query(QUERY), embedder.embed_query(QUERY))


def test_e5use_is_e5_and_use_side_by_side_with_a_weighted_cosine() -> None:
    registry = EmbeddingRegistry(settings(local_embedding_engine="e5use"))
    assert registry.spec("local") == EmbeddingSpec("local-e5use", "local", 384 + 512)
    both = registry.embeddings("local")
    assert isinstance(both, E5UseEmbeddings)
    e5, use = registry.embeddings("local-e5"), registry.embeddings("local-use")
    passages = [SEOUL, KIMCHI, ENGLISH]
    joined, query = both.embed_documents(passages), both.embed_query(QUERY)
    assert {len(v) for v in [*joined, query]} == {896}
    assert all(math.isclose(np.linalg.norm(v), 1.0, abs_tol=1e-5) for v in [*joined, query])
    e5_passages, e5_query = e5.embed_documents(passages), e5.embed_query(QUERY)
    use_passages, use_query = use.embed_documents(passages), use.embed_query(QUERY)
    for vector, a, b in zip(joined, e5_passages, use_passages, strict=True):
        expected = E5USE_E5_WEIGHT * cosine(e5_query, a) + (1 - E5USE_E5_WEIGHT) * cosine(
            use_query, b
        )
        assert cosine(query, vector) == pytest.approx(expected, abs=1e-5)
    assert both.embed_documents([]) == []
    assert registry.spec("local-use").dimension == 512  # older collections keep theirs


async def test_e5use_async_methods_match_the_sync_ones() -> None:
    both = EmbeddingRegistry(settings()).embeddings("local-e5use")
    assert np.allclose(await both.aembed_documents([SEOUL]), both.embed_documents([SEOUL]))
    assert np.allclose(await both.aembed_query(QUERY), both.embed_query(QUERY))


def test_local_batches_are_the_configured_size_and_order_is_kept() -> None:
    e5 = E5Embeddings(threads=2, batch_size=2)
    texts = [SEOUL, KIMCHI, ENGLISH, QUERY, "하나 둘 셋"]
    batched = e5.embed_documents(texts)
    one_by_one = [e5.embed_documents([t])[0] for t in texts]
    assert np.allclose(batched, one_by_one, atol=1e-5)


class SlowEngine(local_engines._LocalEmbeddings):
    """A stand-in engine: blocking work, and a record of loads and threads."""

    kind = "slow-test"
    loads: list[int] = []  # noqa: RUF012
    threads_seen: set[int] = set()  # noqa: RUF012

    def _load(self) -> Any:
        SlowEngine.loads.append(threading.get_ident())
        time.sleep(0.05)
        return object()

    def _encode(self, engine: Any, texts: list[str], *, query: bool) -> Any:
        SlowEngine.threads_seen.add(threading.get_ident())
        time.sleep(0.3)  # blocking CPU-ish work
        return np.ones((len(texts), 4), dtype=np.float32) * (2.0 if query else 3.0)


async def test_local_async_work_runs_off_the_event_loop_and_loads_once() -> None:
    SlowEngine.loads.clear()
    SlowEngine.threads_seen.clear()
    embedder = SlowEngine(threads=1, batch_size=8)
    assert SlowEngine.loads == []  # lazy: nothing loaded by construction
    embedder.embed_documents(["warm"])  # the passage engine, loaded once
    SlowEngine.loads.clear()
    SlowEngine.threads_seen.clear()
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        vectors, query = await asyncio.gather(
            embedder.aembed_documents(["a", "b"]), embedder.aembed_query("q")
        )
    finally:
        task.cancel()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 20 and max(gaps) < 0.2  # the loop kept running during 0.6 s of work
    assert threading.get_ident() not in SlowEngine.threads_seen
    assert len(SlowEngine.loads) == 1  # the query engine, its own instance, loaded on first use
    assert vectors == [[0.5] * 4] * 2 and query == [0.5] * 4  # normalized


def test_building_embedders_loads_no_engine() -> None:
    registry = EmbeddingRegistry(settings(local_embedding_threads=3))  # engines of their own
    for name in ("local-e5", "local-use"):
        embedder = registry.embeddings(name)
        assert isinstance(embedder, local_engines._LocalEmbeddings)
        assert embedder._engine._engine is None  # weights load on the first embedding


# --- the registry ----------------------------------------------------------------------


def test_registry_resolves_local_alias_to_the_configured_engine() -> None:
    e5 = EmbeddingRegistry(settings())
    assert e5.spec(None) == EmbeddingSpec("local-e5", "local", 384)
    assert e5.spec("local") == e5.spec("local-e5")
    assert e5.spec("local-use") == EmbeddingSpec("local-use", "local", 512)
    use = EmbeddingRegistry(settings(local_embedding_engine="use"))
    assert use.spec("local") == EmbeddingSpec("local-use", "local", 512)
    assert use.spec("local-e5").dimension == 384  # a collection keeps its engine
    assert e5.known() == ["local", "local-e5", "local-use", "local-e5use"]
    default = EmbeddingRegistry(settings(embedding_model="local-use"))
    assert default.spec(None).name == "local-use"


def test_registry_refuses_unknown_models_naming_the_known_ones() -> None:
    registry = EmbeddingRegistry(settings())
    with pytest.raises(UnknownEmbeddingModel) as caught:
        registry.spec("word2vec")
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == (
        "unknown embedding model 'word2vec'; known: local, local-e5, local-use, local-e5use"
    )
    with pytest.raises(UnknownEmbeddingModel, match=r"needs an OpenAI key.*known: local,"):
        registry.spec(OPENAI_MODEL)
    with pytest.raises(UnknownEmbeddingModel):
        registry.embeddings(OPENAI_MODEL)
    with pytest.raises(UnknownEmbeddingModel):
        EmbeddingRegistry(settings(embedding_model=OPENAI_MODEL)).spec(None)


def test_registry_offers_openai_models_only_with_a_key() -> None:
    keyless = EmbeddingRegistry(settings())
    assert keyless.spec(OPENAI_MODEL, org_key="sk-org") == EmbeddingSpec(
        OPENAI_MODEL, "openai", 1536
    )
    assert keyless.known(org_key="sk-org")[-2:] == [OPENAI_MODEL, "text-embedding-ada-002"]
    keyed = EmbeddingRegistry(settings(openai_api_key="sk-service"))
    assert keyed.known() == [
        "local",
        "local-e5",
        "local-use",
        "local-e5use",
        OPENAI_MODEL,
        "text-embedding-ada-002",
    ]
    assert keyed.spec("text-embedding-ada-002") == EmbeddingSpec(
        "text-embedding-ada-002", "openai", 1536
    )
    with pytest.raises(UnknownEmbeddingModel, match="unknown embedding model 'text-embedding-3"):
        keyed.spec("text-embedding-3-large")  # not in AHC_OPENAI_EMBEDDING_MODELS


def test_registry_caches_embedders_per_model_and_key() -> None:
    registry = EmbeddingRegistry(settings(openai_api_key="sk-service"))
    service = registry.embeddings(OPENAI_MODEL)
    assert registry.embeddings(OPENAI_MODEL) is service
    assert registry.embeddings(OPENAI_MODEL, org_key="sk-org") is not service
    assert registry.embeddings(OPENAI_MODEL, org_key="sk-org") is registry.embeddings(
        OPENAI_MODEL, org_key="sk-org"
    )
    assert registry.embeddings("text-embedding-ada-002") is not service
    assert registry.embeddings("local") is registry.embeddings("local-e5")


# --- OpenAI through the fake upstream, over real HTTP ------------------------------------


def test_openai_embeddings_batch_send_strings_and_find_the_matching_text(
    fake_openai: FakeOpenAI,
) -> None:
    registry = EmbeddingRegistry(openai_settings(fake_openai, embedding_batch_size=64))
    embedder = registry.embeddings(OPENAI_MODEL)
    texts = [f"document number {i} about topic{i % 7}" for i in range(150)]
    vectors = embedder.embed_documents(texts)
    assert len(vectors) == 150 and {len(v) for v in vectors} == {1536}
    sent = embedding_requests(fake_openai)
    assert [len(r.body["input"]) for r in sent] == [64, 64, 22]
    assert [x for r in sent for x in r.body["input"]] == texts  # strings, not token ids
    assert {r.body["model"] for r in sent} == {OPENAI_MODEL}
    assert {r.headers["authorization"] for r in sent} == {"Bearer sk-service"}
    query = embedder.embed_query("topic3")
    scores = [cosine(query, v) for v in vectors]
    assert texts[int(np.argmax(scores))].endswith("topic3")


def test_openai_embeddings_use_the_org_key_without_the_service_organization(
    fake_openai: FakeOpenAI,
) -> None:
    # The field is only settable by its alias (AHC_OPENAI_ORGANIZATION / OPENAI_ORG_ID).
    registry = EmbeddingRegistry(openai_settings(fake_openai, OPENAI_ORG_ID="org-service"))
    registry.embeddings(OPENAI_MODEL).embed_query("hello")
    registry.embeddings(OPENAI_MODEL, org_key="sk-org-own").embed_query("hello")
    service, own = embedding_requests(fake_openai)
    assert service.headers["authorization"] == "Bearer sk-service"
    assert service.headers["openai-organization"] == "org-service"
    assert own.headers["authorization"] == "Bearer sk-org-own"
    assert "openai-organization" not in own.headers


def test_org_key_alone_enables_openai_embeddings(fake_openai: FakeOpenAI) -> None:
    registry = EmbeddingRegistry(settings(openai_base_url=fake_openai.base_url))
    vector = registry.embeddings(OPENAI_MODEL, org_key="sk-byok").embed_query("hello")
    assert len(vector) == 1536
    assert embedding_requests(fake_openai)[0].headers["authorization"] == "Bearer sk-byok"


def test_real_usage_is_captured_sync_and_async(fake_openai: FakeOpenAI) -> None:
    registry = EmbeddingRegistry(openai_settings(fake_openai, embedding_batch_size=2))
    embedder = registry.embeddings(OPENAI_MODEL)
    texts = ["one two three", "four five", "six"]
    with measure_usage() as tally:
        embedder.embed_documents(texts)
    assert (tally.prompt_tokens, tally.responses, tally.reported) == (6, 2, 2)
    assert tally.complete

    async def run() -> None:
        with measure_usage() as tally:
            await embedder.aembed_documents(texts)
            await embedder.aembed_query("seven eight")
        assert (tally.prompt_tokens, tally.responses) == (8, 3) and tally.complete
        embedder.embed_query("outside any tally")  # no tally: the hook stays out of the way
        await registry.aclose()  # the async pool belongs to this loop

    asyncio.run(run())  # a loop of its own: the async client is first used here
    assert len(embedding_requests(fake_openai)) == 6


async def test_concurrent_tallies_do_not_mix(fake_openai: FakeOpenAI) -> None:
    registry = EmbeddingRegistry(openai_settings(fake_openai))
    embedder = registry.embeddings(OPENAI_MODEL)

    async def measured(text: str) -> int:
        with measure_usage() as tally:
            await embedder.aembed_query(text)
            await asyncio.sleep(0.01)
            await embedder.aembed_query(text)
        return tally.prompt_tokens

    assert await asyncio.gather(measured("a"), measured("a b c"), measured("a b")) == [2, 6, 4]
    await registry.aclose()


async def test_registry_aclose_closes_the_pools(fake_openai: FakeOpenAI) -> None:
    registry = EmbeddingRegistry(openai_settings(fake_openai))
    embedder = registry.embeddings(OPENAI_MODEL)
    org_embedder = registry.embeddings(OPENAI_MODEL, org_key="sk-org")  # one pool for every key
    assert org_embedder.http_async_client is embedder.http_async_client  # type: ignore[attr-defined]
    assert len(await embedder.aembed_query("x")) == 1536
    await registry.aclose()
    assert embedder.http_async_client.is_closed and embedder.http_client.is_closed  # type: ignore[attr-defined]
    again = registry.embeddings(OPENAI_MODEL)
    assert again is not embedder and again.http_async_client is not embedder.http_async_client  # type: ignore[attr-defined]


# --- the lean query path --------------------------------------------------------------


def sdk_sent(request: Any) -> bool:
    """Whether the openai SDK made ``request`` (it sends its X-Stainless headers)."""
    return "x-stainless-lang" in request.headers


async def test_a_query_is_one_lean_post_with_the_sdk_s_url_key_and_usage(
    fake_openai: FakeOpenAI,
) -> None:
    lean = EmbeddingRegistry(openai_settings(fake_openai, OPENAI_ORG_ID="org-service"))
    sdk = EmbeddingRegistry(
        openai_settings(fake_openai, OPENAI_ORG_ID="org-service", lean_query_embeddings=False)
    )
    with measure_usage() as tally:
        vector = await lean.embeddings(OPENAI_MODEL).aembed_query("topic three")
    (sent,) = embedding_requests(fake_openai)
    assert not sdk_sent(sent)
    assert sent.headers["authorization"] == "Bearer sk-service"
    assert sent.headers["openai-organization"] == "org-service"
    assert sent.body == {
        "input": ["topic three"],
        "model": OPENAI_MODEL,
        "encoding_format": "base64",
    }
    assert (tally.prompt_tokens, tally.responses, tally.reported) == (2, 1, 1)
    # The same vector as the SDK's call (which the switch turns back on).
    with measure_usage() as tally:
        expected = await sdk.embeddings(OPENAI_MODEL).aembed_query("topic three")
    assert sdk_sent(embedding_requests(fake_openai)[-1])
    assert tally.prompt_tokens == 2 and vector == expected and len(vector) == 1536
    # An org's own key: its key, not the service's organization.
    await lean.embeddings(OPENAI_MODEL, org_key="sk-org-own").aembed_query("x")
    own = embedding_requests(fake_openai)[-1]
    assert not sdk_sent(own) and own.headers["authorization"] == "Bearer sk-org-own"
    assert "openai-organization" not in own.headers
    # Passages stay with the SDK.
    await lean.embeddings(OPENAI_MODEL).aembed_documents(["a b"])
    assert sdk_sent(embedding_requests(fake_openai)[-1])
    await lean.aclose()
    await sdk.aclose()


@pytest.mark.parametrize("status", [500, 429, 401])
async def test_a_failed_lean_query_falls_back_to_the_sdk(
    fake_openai: FakeOpenAI, status: int
) -> None:
    registry = EmbeddingRegistry(openai_settings(fake_openai))
    embedder = registry.embeddings(OPENAI_MODEL)
    fake_openai.fail_next(status=status)
    with measure_usage() as tally:
        vector = await embedder.aembed_query("one two")
    lean, retried = embedding_requests(fake_openai)
    assert not sdk_sent(lean) and sdk_sent(retried)  # the SDK made the call that answered
    assert len(vector) == 1536
    assert (tally.prompt_tokens, tally.responses) == (2, 1)  # the failed attempt counts nothing
    # When the SDK fails too, its error is the caller's (as without the lean path).
    fake_openai.fail_next(status=status, times=2)
    with pytest.raises(openai.APIStatusError) as caught:
        await embedder.aembed_query("one two")
    assert caught.value.status_code == status
    await registry.aclose()


async def test_an_unreachable_upstream_falls_back_to_the_sdk_s_error() -> None:
    registry = EmbeddingRegistry(
        settings(openai_api_key="sk-x", openai_base_url="http://127.0.0.1:9/v1")
    )
    with pytest.raises(openai.APIConnectionError):
        await registry.embeddings(OPENAI_MODEL).aembed_query("x")
    await registry.aclose()


def test_the_lean_path_takes_the_environment_s_proxy_once_per_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    sessions = lean_query._Sessions()
    url = "https://api.openai.example/v1/embeddings"
    assert sessions.proxy(url) == ("http://proxy.example:3128", None)
    monkeypatch.delenv("HTTPS_PROXY")
    assert sessions.proxy(url)[0] == "http://proxy.example:3128"  # looked up once
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "api.openai.example")
    assert lean_query._Sessions().proxy(url) == (None, None)


# --- accounting -----------------------------------------------------------------------


class Sink:
    """Stands in for the UsageRecorder: keeps what the accountant hands it."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def record(self, record: UsageRecord) -> None:
        self.records.append(record)


class Hold:
    """Stands in for a limit reservation."""

    def __init__(self) -> None:
        self.settled: list[tuple[int, Decimal]] = []

    def account(
        self, tokens: int, cost: Decimal, *, audio_seconds: float = 0.0, characters: int = 0
    ) -> None:
        self.settled.append((tokens, cost))


CONTEXT = CallContext(org_id="org-a", user_id="alice", route="knowledge.ingest", request_id="r1")


def accounted(
    registry: EmbeddingRegistry, name: str, context: CallContext = CONTEXT, **kw: Any
) -> tuple[AccountedEmbeddings, Sink]:
    sink = Sink()
    accountant = Accountant(sink, PriceTable(), lambda _: "unused")  # type: ignore[arg-type]
    inner = registry.embeddings(name, **kw)
    spec = registry.spec(name, **kw)
    return AccountedEmbeddings(inner, spec=spec, accountant=accountant, context=context), sink


def test_openai_calls_record_one_event_each_with_real_usage_and_cost(
    fake_openai: FakeOpenAI,
) -> None:
    registry = EmbeddingRegistry(openai_settings(fake_openai, embedding_batch_size=64))
    embedder, sink = accounted(registry, OPENAI_MODEL)
    texts = [f"w{i} x y" for i in range(150)]
    assert len(embedder.embed_documents(texts)) == 150
    assert len(embedding_requests(fake_openai)) == 3
    (event,) = sink.records  # one event for the call, three upstream requests
    assert (event.org_id, event.user_id, event.route, event.request_id) == (
        "org-a",
        "alice",
        "knowledge.ingest",
        "r1",
    )
    assert (event.model, event.provider, event.status, event.error_code) == (
        OPENAI_MODEL,
        "openai",
        "ok",
        None,
    )
    assert event.prompt_tokens == 450 and event.completion_tokens == 0
    assert event.estimated is False
    assert event.cost_usd == Decimal("0.02") * 450 / 1_000_000
    assert event.latency_ms >= 0
    embedder.embed_query("a b c d e")
    assert sink.records[-1].prompt_tokens == 5 and len(sink.records) == 2


async def test_async_openai_calls_are_accounted(fake_openai: FakeOpenAI) -> None:
    registry = EmbeddingRegistry(openai_settings(fake_openai))
    embedder, sink = accounted(registry, "text-embedding-ada-002", org_key="sk-org")
    await embedder.aembed_documents(["alpha beta", "gamma"])
    await embedder.aembed_query("delta epsilon")
    assert [(r.prompt_tokens, r.estimated) for r in sink.records] == [(3, False), (2, False)]
    assert sink.records[0].cost_usd == Decimal("0.10") * 3 / 1_000_000
    assert embedding_requests(fake_openai)[0].headers["authorization"] == "Bearer sk-org"
    await registry.aclose()


async def test_local_calls_are_estimated_and_free() -> None:
    embedder, sink = accounted(EmbeddingRegistry(settings()), "local")
    await embedder.aembed_documents([SEOUL, KIMCHI])
    embedder.embed_query(QUERY)
    first, second = sink.records
    assert (first.model, first.provider, first.estimated, first.cost_usd) == (
        "local-e5",
        "local",
        True,
        Decimal(0),
    )
    assert first.prompt_tokens == count_text_tokens(SEOUL, OPENAI_MODEL) + count_text_tokens(
        KIMCHI, OPENAI_MODEL
    )
    assert second.prompt_tokens == estimate_tokens([QUERY]) > 0


def test_failed_call_records_an_error_then_raises(fake_openai: FakeOpenAI) -> None:
    registry = EmbeddingRegistry(openai_settings(fake_openai))
    embedder, sink = accounted(registry, OPENAI_MODEL)
    fake_openai.fail_next(status=500)
    with pytest.raises(openai.InternalServerError):
        embedder.embed_documents(["a b"])
    (event,) = sink.records
    assert (event.status, event.error_code, event.prompt_tokens) == (
        "error",
        "InternalServerError",
        0,
    )
    assert event.cost_usd == 0 and event.estimated is False


async def test_failure_half_way_bills_the_batches_that_went_through(
    fake_openai: FakeOpenAI,
) -> None:
    registry = EmbeddingRegistry(openai_settings(fake_openai, embedding_batch_size=2))
    embedder, sink = accounted(registry, OPENAI_MODEL)
    fake_openai.delay_next(0)  # the first request passes...
    fake_openai.fail_next(status=429, retry_after="1")  # ...the second is refused
    with pytest.raises(openai.RateLimitError):
        await embedder.aembed_documents(["a b", "c", "d e f", "g"])
    (event,) = sink.records
    assert (event.status, event.error_code, event.prompt_tokens) == ("error", "RateLimitError", 3)
    assert event.cost_usd == Decimal("0.02") * 3 / 1_000_000
    await registry.aclose()


def test_events_settle_the_reservation(fake_openai: FakeOpenAI) -> None:
    hold = Hold()
    context = CallContext("o", "u", "knowledge.search", reservation=hold)  # type: ignore[arg-type]
    embedder, sink = accounted(
        EmbeddingRegistry(openai_settings(fake_openai)), OPENAI_MODEL, context
    )
    embedder.embed_query("one two")
    assert hold.settled == [(2, Decimal("0.02") * 2 / 1_000_000)]
    assert sink.records[0].route == "knowledge.search"


def test_accounting_failures_never_break_the_call(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def record(self, record: UsageRecord) -> None:
            raise RuntimeError("database on fire")

    class Fixed(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[1.0, 0.0] for _ in texts]

        def embed_query(self, text: str) -> list[float]:
            return [0.0, 1.0]

    accountant = Accountant(Broken(), PriceTable(), lambda _: "x")  # type: ignore[arg-type]
    spec = EmbeddingSpec("local-e5", "local", 2)
    embedder = AccountedEmbeddings(Fixed(), spec=spec, accountant=accountant, context=CONTEXT)
    assert embedder.embed_documents(["a"]) == [[1.0, 0.0]]
    assert asyncio.run(embedder.aembed_query("b")) == [0.0, 1.0]  # LangChain's default async
    assert "could not account an embedding call" in caplog.text
