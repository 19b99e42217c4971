"""The fake OpenAI upstream speaks the wire protocol the official SDK expects."""

from __future__ import annotations

import base64
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes.openai_server import FakeOpenAI

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


def client(fake: FakeOpenAI, timeout: float = 10.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0, timeout=timeout)


def test_plain_completion_echoes_and_is_recorded(fake_openai: FakeOpenAI) -> None:
    result = client(fake_openai).chat.completions.create(model="gpt-4o", messages=USER)
    assert result.object == "chat.completion" and result.model == "gpt-4o"
    choice = result.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "echo: hello there"
    assert choice.finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (5, 3)
    assert result.usage.total_tokens == 8
    sent = fake_openai.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body == {"model": "gpt-4o", "messages": USER}


def test_reply_and_stream_tokens_shape_the_answer(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = "one two three four five"
    sdk = client(fake_openai)
    assert sdk.chat.completions.create(model="m", messages=USER).choices[0].message.content == (
        "one two three four five"
    )
    fake_openai.stream_tokens = 2
    stream = sdk.chat.completions.create(model="m", messages=USER, stream=True)
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert pieces == ["one two three", " four five"]
    fake_openai.stream_tokens = 7
    result = sdk.chat.completions.create(model="m", messages=USER)
    assert result.choices[0].message.content == "one two three four five one two"
    assert result.usage is not None and result.usage.completion_tokens == 7


def test_stream_with_usage(fake_openai: FakeOpenAI) -> None:
    stream = client(fake_openai).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "a b c"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert (
        chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    )
    content = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert content == ["echo:", " a", " b", " c"]
    assert (
        chunks[-2].choices[0].finish_reason == "stop"
        and chunks[-2].choices[0].delta.content is None
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (6, 4)
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert fake_openai.completed_streams == 1 and fake_openai.disconnects == 0


def test_stream_wire_format(fake_openai: FakeOpenAI) -> None:
    fake_openai.stream_tokens = 50
    body = {"model": "m", "messages": USER, "stream": True}
    headers = {"Authorization": "Bearer sk-raw"}
    with (
        httpx.Client() as http,
        http.stream(
            "POST", f"{fake_openai.base_url}/chat/completions", json=body, headers=headers
        ) as r,
    ):
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["transfer-encoding"] == "chunked"
        lines = list(r.iter_lines())
    events = [line for line in lines if line]
    assert all(e.startswith("data: ") for e in events) and len(events) == 1 + 50 + 1 + 1
    assert events[-1] == "data: [DONE]" and '"usage"' not in "".join(events)


def test_models_list(fake_openai: FakeOpenAI) -> None:
    models = client(fake_openai).models.list()
    assert [m.id for m in models] == ["gpt-4o-mini", "gpt-4o"]
    assert fake_openai.requests[-1].method == "GET"


def test_429_surfaces_as_rate_limit_error_with_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=429, retry_after="1")
    sdk = client(fake_openai)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="m", messages=USER)
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "scripted" and caught.value.type == "rate_limit_error"
    assert sdk.chat.completions.create(model="m", messages=USER).choices  # consumed: one only


def test_500_twice_then_success(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=500, times=2)
    sdk = client(fake_openai)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as caught:
            sdk.chat.completions.create(model="m", messages=USER)
        assert "retry-after" not in caught.value.response.headers
    assert sdk.chat.completions.create(model="m", messages=USER).choices
    assert len(fake_openai.requests) == 3


def test_delay_makes_the_client_time_out(fake_openai: FakeOpenAI) -> None:
    fake_openai.delay_next(1.0)
    sdk = client(fake_openai, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        sdk.chat.completions.create(model="m", messages=USER)
    assert time.monotonic() - started < 0.9
    assert sdk.chat.completions.create(model="m", messages=USER).choices  # no delay any more
    assert fake_openai.client_disconnected.wait(2)  # it noticed the client gave up
    assert fake_openai.disconnects == 1


def test_missing_key_is_401_and_unknown_routes_404(fake_openai: FakeOpenAI) -> None:
    response = httpx.post(f"{fake_openai.base_url}/chat/completions", json={"messages": USER})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
    assert set(error) >= {"message", "type", "code"}
    with pytest.raises(openai.NotFoundError):
        client(fake_openai).completions.create(model="m", prompt="x")  # legacy: not served


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # the fake's vectors are unit length


def test_embeddings_float_vectors_are_deterministic_and_meaningful(
    fake_openai: FakeOpenAI,
) -> None:
    texts = ["The cat sat on the mat", "Stock markets fell sharply today", "서울은 한국의 수도이다"]
    result = client(fake_openai).embeddings.create(
        model="text-embedding-3-small", input=texts, encoding_format="float"
    )
    assert result.object == "list" and result.model == "text-embedding-3-small"
    assert [d.index for d in result.data] == [0, 1, 2]
    vectors = [d.embedding for d in result.data]
    assert {len(v) for v in vectors} == {1536}
    assert all(abs(cosine(v, v) - 1) < 1e-5 for v in vectors)
    assert result.usage.prompt_tokens == 6 + 5 + 3 == result.usage.total_tokens
    query = client(fake_openai).embeddings.create(
        model="text-embedding-3-small", input="where did the cat sit", encoding_format="float"
    )
    q = query.data[0].embedding
    assert cosine(q, vectors[0]) > 0.3 > cosine(q, vectors[1])
    korean = client(fake_openai).embeddings.create(
        model="m", input="서울의 인구", encoding_format="float"
    )
    k = korean.data[0].embedding  # "서울의" shares the bigram "서울" with "서울은"
    assert cosine(k, vectors[2]) > 0.1 > abs(cosine(k, vectors[0]))
    again = client(fake_openai).embeddings.create(model="m", input=texts, encoding_format="float")
    assert [d.embedding for d in again.data] == vectors
    sent = fake_openai.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/embeddings")
    assert sent.body == {
        "model": "text-embedding-3-small",
        "input": texts,
        "encoding_format": "float",
    }


def test_embeddings_base64_is_the_sdk_default_and_decodes_to_the_same_floats(
    fake_openai: FakeOpenAI,
) -> None:
    sdk = client(fake_openai)
    decoded = sdk.embeddings.create(model="text-embedding-ada-002", input=["alpha beta"])
    assert fake_openai.requests[-1].body["encoding_format"] == "base64"  # the SDK asked for it
    floats = sdk.embeddings.create(
        model="text-embedding-ada-002", input=["alpha beta"], encoding_format="float"
    )
    assert decoded.data[0].embedding == floats.data[0].embedding  # exact: both float32
    raw = httpx.post(
        f"{fake_openai.base_url}/embeddings",
        json={"model": "m", "input": "alpha beta", "encoding_format": "base64", "dimensions": 8},
        headers={"Authorization": "Bearer k"},
    ).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    values = struct.unpack("<8f", packed)
    assert len(packed) == 32 and abs(sum(v * v for v in values) - 1) < 1e-5


def test_embeddings_accept_token_ids_and_dimensions(fake_openai: FakeOpenAI) -> None:
    sdk = client(fake_openai)
    one = sdk.embeddings.create(model="m", input=[1, 2, 3], encoding_format="float")
    assert len(one.data) == 1 and one.usage.prompt_tokens == 3
    many = sdk.embeddings.create(
        model="m", input=[[1, 2], [3]], dimensions=64, encoding_format="float"
    )
    assert [len(d.embedding) for d in many.data] == [64, 64] and many.usage.prompt_tokens == 3
    empty = sdk.embeddings.create(model="m", input="", encoding_format="float")
    assert empty.data[0].embedding[0] == 1.0 and empty.usage.prompt_tokens == 0


@pytest.mark.parametrize(
    "body",
    [
        {"input": "x"},
        {"model": "m"},
        {"model": "m", "input": []},
        {"model": "m", "input": [1, "a"]},
        {"model": "m", "input": "x", "encoding_format": "int8"},
        {"model": "m", "input": "x", "dimensions": 0},
    ],
)
def test_embeddings_refuse_malformed_bodies(fake_openai: FakeOpenAI, body: dict) -> None:
    response = httpx.post(
        f"{fake_openai.base_url}/embeddings", json=body, headers={"Authorization": "Bearer k"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


def test_embeddings_scripted_failures_and_delays(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=429, retry_after="2")
    sdk = client(fake_openai)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.embeddings.create(model="m", input="x")
    assert caught.value.response.headers["retry-after"] == "2"
    assert sdk.embeddings.create(model="m", input="x").data  # consumed: one only
    fake_openai.delay_next(1.0)
    with pytest.raises(openai.APITimeoutError):
        client(fake_openai, timeout=0.2).embeddings.create(model="m", input="x")


@pytest.mark.asyncio
async def test_async_sdk_embeddings(fake_openai: FakeOpenAI) -> None:
    async with openai.AsyncOpenAI(
        base_url=fake_openai.base_url, api_key="sk-async", max_retries=0
    ) as sdk:
        result = await sdk.embeddings.create(model="m", input=["a b", "c"])
    assert [len(d.embedding) for d in result.data] == [1536, 1536]
    assert result.usage.prompt_tokens == 3


def test_client_disconnect_mid_stream_is_noticed(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = " ".join(f"w{i}" for i in range(200))
    fake_openai.token_delay = 0.01
    stream = client(fake_openai).chat.completions.create(model="m", messages=USER, stream=True)
    for _, _chunk in zip(range(3), stream, strict=False):
        pass
    stream.close()
    assert fake_openai.client_disconnected.wait(2)
    assert fake_openai.disconnects == 1 and fake_openai.completed_streams == 0


def test_keep_alive_serves_several_requests_on_one_connection(fake_openai: FakeOpenAI) -> None:
    port = int(fake_openai.base_url.split(":")[2].split("/")[0])
    body = b'{"model":"m","messages":[{"role":"user","content":"x"}]}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(3):
            sock.sendall(request)
            answer = b""
            while not answer.endswith(b"}"):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b'"echo: x"' in answer
    assert len(fake_openai.requests) == 3


def test_reset_forgets_everything(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply, fake_openai.token_delay, fake_openai.stream_tokens = "x", 1.0, 3
    fake_openai.fail_next(status=500)
    httpx.get(f"{fake_openai.base_url}/models", headers={"Authorization": "Bearer k"})
    fake_openai.reset()
    assert fake_openai.requests == [] and fake_openai.reply is None
    assert fake_openai.token_delay == 0 and fake_openai.stream_tokens is None
    assert client(fake_openai).chat.completions.create(model="m", messages=USER).choices


def test_own_instance_starts_and_stops() -> None:
    with FakeOpenAI() as fake:
        assert client(fake).models.list().data
        assert fake.cpu_time() > 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{fake.base_url}/models", headers={"Authorization": "Bearer k"})


def test_standalone_process_prints_ready() -> None:
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0"]
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            ready, base_url = proc.stdout.readline().split()
            assert ready == "READY" and base_url.startswith("http://127.0.0.1:")
            response = httpx.get(f"{base_url}/models", headers={"Authorization": "Bearer k"})
            assert response.json()["object"] == "list"
        finally:
            proc.terminate()


@pytest.mark.asyncio
async def test_async_sdk_plain_and_stream(fake_openai: FakeOpenAI) -> None:
    async with openai.AsyncOpenAI(
        base_url=fake_openai.base_url, api_key="sk-async", max_retries=0
    ) as sdk:
        result = await sdk.chat.completions.create(model="m", messages=USER)
        assert result.choices[0].message.content == "echo: hello there"
        stream = await sdk.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there" and chunks[-1].usage is not None
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-async"


@pytest.mark.asyncio
async def test_async_rate_limit(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=429, retry_after="7")
    async with openai.AsyncOpenAI(
        base_url=fake_openai.base_url, api_key="sk-async", max_retries=0
    ) as sdk:
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model="m", messages=USER)
    assert caught.value.response.headers["retry-after"] == "7"
