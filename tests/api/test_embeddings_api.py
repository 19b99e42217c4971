"""``POST /api/embeddings`` with real clients: the openai SDK and LangChain's OpenAIEmbeddings.

Local models run offline (no key); OpenAI's go to the fake upstream with the org's own key.
Every call is one usage event on the route ``embeddings`` and counts against the limits.
"""

from __future__ import annotations

import base64
import math
import struct
import time
from typing import Any

import httpx
import openai
import pytest
from langchain_openai import OpenAIEmbeddings

from providers.embeddings import LOCAL_DIMENSIONS
from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService

ORG_KEY = "sk-org-a-own-key-1234"
OPENAI_MODEL = "text-embedding-3-small"


def sdk(service: RunningService) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.api, api_key=service.token(), max_retries=0)


def post(service: RunningService, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{service.api}/embeddings", headers=service.headers(), json=body, timeout=60)


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def test_sdk_local_model_offline(service: RunningService, fake_openai: FakeOpenAI) -> None:
    client = sdk(service)
    answer = client.embeddings.create(model="local", input=["first text", "second text"])
    assert [d.index for d in answer.data] == [0, 1]
    engine = f"local-{service.settings.local_embedding_engine}"  # what `local` stands for
    assert answer.model == engine
    assert all(len(d.embedding) == LOCAL_DIMENSIONS[engine] for d in answer.data)
    assert abs(norm(answer.data[0].embedding) - 1) < 1e-3
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > 0
    assert not fake_openai.requests  # nothing left the service

    single = client.embeddings.create(model=engine, input="first text", encoding_format="float")
    assert single.data[0].embedding == pytest.approx(answer.data[0].embedding, abs=1e-6)


def test_base64_is_little_endian_float32(service: RunningService) -> None:
    plain = post(service, {"model": "local", "input": "hello"}).json()
    packed = post(service, {"model": "local", "input": "hello", "encoding_format": "base64"})
    assert packed.status_code == 200, packed.text
    raw = base64.b64decode(packed.json()["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(
        plain["data"][0]["embedding"], abs=1e-7
    )


def test_sdk_openai_model_with_the_org_key_and_dimensions(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    admin = service.headers("org-a", "boss", "admin")
    stored = httpx.put(
        f"{service.api}/provider-keys/openai", headers=admin, json={"api_key": ORG_KEY}
    )
    assert stored.status_code == 200
    answer = sdk(service).embeddings.create(
        model=OPENAI_MODEL, input=["alpha beta", "gamma"], dimensions=256
    )
    assert [len(d.embedding) for d in answer.data] == [256, 256]
    assert answer.usage.prompt_tokens == 3  # the provider's count (the fake: words)
    (call,) = [r for r in fake_openai.requests if r.path.endswith("/embeddings")]
    assert call.headers["authorization"] == f"Bearer {ORG_KEY}"
    assert call.body["dimensions"] == 256 and call.body["input"] == ["alpha beta", "gamma"]


def test_langchain_openai_embeddings(service: RunningService, fake_openai: FakeOpenAI) -> None:
    local = OpenAIEmbeddings(
        base_url=service.api,
        api_key=service.token(),
        model="local",
        check_embedding_ctx_length=False,
    )
    vectors = local.embed_documents(["one", "two"])
    assert len(vectors) == 2 and len(vectors[0]) in LOCAL_DIMENSIONS.values()
    assert local.embed_query("one") == pytest.approx(vectors[0], abs=1e-6)

    # The default (check_embedding_ctx_length=True) sends token ids: decoded, then embedded.
    remote = OpenAIEmbeddings(base_url=service.api, api_key=service.token(), model=OPENAI_MODEL)
    (vector,) = remote.embed_documents(["hello world"])
    assert len(vector) == 1536
    assert fake_openai.requests[-1].body["input"] == ["hello world"]


def test_token_id_inputs(service: RunningService) -> None:
    text = post(service, {"model": "local", "input": "hello world"}).json()["data"][0]
    ids = post(service, {"model": "local", "input": [15339, 1917]})  # cl100k "hello world"
    nested = post(service, {"model": "local", "input": [[15339, 1917], [15339]]})
    assert ids.status_code == nested.status_code == 200, (ids.text, nested.text)
    assert ids.json()["data"][0]["embedding"] == pytest.approx(text["embedding"], abs=1e-6)
    assert len(nested.json()["data"]) == 2


@pytest.mark.parametrize(
    ("body", "status", "code", "names"),
    [
        ({"model": "local", "input": ""}, 400, "invalid_request", "input"),
        ({"model": "local", "input": []}, 400, "invalid_request", "input"),
        ({"model": "local", "input": ["ok", ""]}, 400, "invalid_request", "input[1]"),
        ({"model": "local", "input": [[]]}, 400, "invalid_request", "input[0]"),
        ({"model": "local", "input": ["x"] * 2049}, 400, "invalid_request", "2048"),
        ({"model": "local", "input": "word " * 9000}, 400, "context_length_exceeded", "input[0]"),
        ({"model": "embed-9", "input": "x"}, 400, "unknown_model", "local-e5"),
        (
            {"model": "local", "input": "x", "dimensions": 64},
            400,
            "unsupported_parameter",
            "dimensions",
        ),
        (
            {"model": "text-embedding-ada-002", "input": "x", "dimensions": 64},
            400,
            "unsupported_parameter",
            "dimensions",
        ),
        (
            {"model": OPENAI_MODEL, "input": "x", "dimensions": 4096},
            400,
            "invalid_request",
            "dimensions",
        ),
        ({"model": "local", "input": [[2**40]]}, 400, "invalid_request", "input[0]"),
        ({"model": "local", "input": 5}, 422, "invalid_request", "input"),
        ({"model": "local", "input": ["a", 1]}, 422, "invalid_request", "input"),
        (
            {"model": "local", "input": "x", "encoding_format": "hex"},
            422,
            "invalid_request",
            "encoding_format",
        ),
    ],
)
def test_bad_input(
    service: RunningService, body: dict[str, Any], status: int, code: str, names: str
) -> None:
    response = post(service, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and names in error["message"], error


def test_unknown_model_via_sdk_lists_known_ones(service: RunningService) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk(service).embeddings.create(model="embed-9", input="x")
    assert "local-e5" in str(info.value) and OPENAI_MODEL in str(info.value)


def _route_usage(service: RunningService) -> dict[str, Any] | None:
    report = httpx.get(
        f"{service.api}/usage",
        headers=service.headers("org-a", "boss", "admin"),
        params={"group_by": "route"},
    )
    assert report.status_code == 200, report.text
    return next((g for g in report.json()["groups"] if g["key"] == "embeddings"), None)


def _org_tokens(service: RunningService) -> int:
    counters = service.app.state.services.limits.counters
    values = getattr(counters, "_values", {})
    return sum(v for k, (v, _e) in values.items() if k.startswith("org:org-a:tokens_per_day"))


@pytest.mark.parametrize("model", ["local", OPENAI_MODEL])
def test_embeddings_are_accounted_and_limited(
    service: RunningService, fake_openai: FakeOpenAI, model: str
) -> None:
    admin = service.headers("org-a", "boss", "admin")
    limits = {"tokens_per_day": 10**9, "requests_per_minute": 10**6}
    assert httpx.put(f"{service.api}/limits", headers=admin, json=limits).status_code == 200
    answer = post(service, {"model": model, "input": ["one two three", "four"]})
    assert answer.status_code == 200, answer.text
    tokens = answer.json()["usage"]["prompt_tokens"]
    assert tokens > 0
    deadline = time.monotonic() + 15
    usage = _route_usage(service)
    while time.monotonic() < deadline and not (usage and _org_tokens(service) == tokens):
        time.sleep(0.1)
        usage = _route_usage(service)
    assert usage is not None
    assert usage["requests"] == 1 and usage["total_tokens"] == tokens
    assert _org_tokens(service) == tokens  # the hold settled to the call's real tokens


def test_embeddings_over_a_limit_are_refused(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    admin = service.headers("org-a", "boss", "admin")
    assert (
        httpx.put(
            f"{service.api}/limits", headers=admin, json={"tokens_per_minute": 50}
        ).status_code
        == 200
    )
    assert post(service, {"model": OPENAI_MODEL, "input": "short text"}).status_code == 200
    refused = post(service, {"model": OPENAI_MODEL, "input": "word " * 200})
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "limit_exceeded"
    assert len([r for r in fake_openai.requests if r.path.endswith("/embeddings")]) == 1


def test_upstream_failure_is_mapped(service: RunningService, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=500, times=10)
    response = post(service, {"model": OPENAI_MODEL, "input": "x"})
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"]


def test_requires_a_token(service: RunningService) -> None:
    response = httpx.post(f"{service.api}/embeddings", json={"model": "local", "input": "x"})
    assert response.status_code == 401
