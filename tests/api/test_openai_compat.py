"""The official openai SDK and LangChain's ChatOpenAI work against the service unchanged."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService


def sdk(service: RunningService, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.api, api_key=service.token(), max_retries=0, **kw)


def test_models_list(service: RunningService) -> None:
    models = sdk(service).models.list()
    ids = [m.id for m in models.data if "chat" in (m.model_extra or {})["capabilities"]]
    assert ids[0] == "gpt-4o-mini"  # the default first
    assert set(ids) == {"gpt-4o-mini", "gpt-4o", "gpt-4", "gpt-3.5-turbo", "local"}


def test_models_without_key_lists_only_local(services) -> None:
    service = services.start(openai_api_key=None)
    body = httpx.get(f"{service.api}/models", headers=service.headers()).json()
    chat = [m for m in body["data"] if "chat" in m["capabilities"]]
    assert chat == [
        {
            "id": "local",
            "object": "model",
            "created": body["data"][0]["created"],
            "owned_by": "local",
            "capabilities": ["chat", "embeddings"],  # also the local embedding alias
            "dimensions": chat[0]["dimensions"],
        }
    ]
    assert chat[0]["dimensions"] in (384, 512, 896)  # the configured local engine's
    assert body["object"] == "list"
    listed = [m["id"] for m in body["data"]]
    assert listed == ["local", "local-e5", "local-use", "local-e5use"]  # no key


def test_sdk_plain_completion(service: RunningService, fake_openai: FakeOpenAI) -> None:
    result = sdk(service).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "ping pong"}],
        temperature=0.2,
        max_tokens=50,
    )
    assert result.choices[0].message.content == "echo: ping pong"
    assert result.usage is not None and result.usage.total_tokens > 0
    sent = fake_openai.requests[-1]
    assert sent.body["model"] == "gpt-4o"
    assert sent.body["temperature"] == 0.2 and sent.body["max_tokens"] == 50
    assert sent.headers["authorization"] == "Bearer sk-service-key"  # never the client's JWT


def test_sdk_stream_with_usage(service: RunningService, fake_openai: FakeOpenAI) -> None:
    stream = sdk(service).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    # The service always asks the upstream for usage (exact accounting of streams).
    assert fake_openai.requests[-1].body["stream_options"] == {"include_usage": True}


def test_sdk_stream_without_usage_gets_no_usage_chunk(service: RunningService) -> None:
    chunks = list(
        sdk(service).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert chunks and all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_default_model_is_used_when_none_given(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    response = httpx.post(
        f"{service.api}/chat/completions",
        headers=service.headers(),
        json={"messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200
    assert fake_openai.requests[-1].body["model"] == "gpt-4o-mini"


def test_local_model_is_default_without_key(services, fake_openai: FakeOpenAI) -> None:
    service = services.start(openai_api_key=None)
    result = sdk(service).chat.completions.create(
        model="local", messages=[{"role": "user", "content": "hi"}]
    )
    assert result.choices[0].message.content == "echo: hi"
    response = httpx.post(
        f"{service.api}/chat/completions",
        headers=service.headers(),
        json={"messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.json()["model"] == "local"


def test_chat_openai_invoke_and_stream(service: RunningService) -> None:
    llm = ChatOpenAI(
        base_url=service.api, api_key=service.token(), model="gpt-4o-mini", max_retries=0
    )
    answer = llm.invoke("hello there")
    assert answer.content == "echo: hello there"
    assert answer.usage_metadata and answer.usage_metadata["total_tokens"] > 0
    streamed = list(
        ChatOpenAI(base_url=service.api, api_key=service.token(), stream_usage=True).stream("a b")
    )
    assert "".join(str(c.content) for c in streamed) == "echo: a b"
    assert any(c.usage_metadata for c in streamed)


async def test_async_sdk(service: RunningService) -> None:
    client = openai.AsyncOpenAI(base_url=service.api, api_key=service.token(), max_retries=0)
    result = await client.chat.completions.create(
        model="gpt-4", messages=[{"role": "user", "content": "x"}]
    )
    assert result.choices[0].message.content == "echo: x"
    await client.close()


def test_front_end_stream_route(service: RunningService) -> None:
    with httpx.stream(
        "POST",
        f"{service.api}/chat/stream",
        headers=service.headers(),
        json={"messages": [{"role": "user", "content": "hi"}]},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert len(events) > 2


def test_stream_chunks_arrive_incrementally(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = "a b c d e f"
    fake_openai.token_delay = 0.15
    arrivals: list[float] = []
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{service.api}/chat/completions",
        headers=service.headers(),
        json={"messages": [{"role": "user", "content": "go"}], "stream": True},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content":"' in line.replace(" ", ""):
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= 5
    # Not buffered: the first token arrives long before the last one was generated.
    assert arrivals[-1] - arrivals[0] > 0.5


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}, 400, "unknown_model"),
        ({"messages": []}, 400, "missing_messages"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, 400, "unsupported_parameter"),
        (
            {
                "model": "local",  # tools pass through since issue 13; the local model has none
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}],
            },
            400,
            "unsupported_parameter",
        ),
        ({"messages": [{"role": "wizard", "content": "x"}]}, 422, "invalid_request"),
        ({"messages": "hello"}, 422, "invalid_request"),
        (
            {"messages": [{"role": "user", "content": "x"}], "temperature": 7},
            422,
            "invalid_request",
        ),
    ],
)
def test_bad_requests(service: RunningService, body: dict, status: int, code: str) -> None:
    response = httpx.post(f"{service.api}/chat/completions", headers=service.headers(), json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_unknown_model_names_known_ones(service: RunningService) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk(service).chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "x"}]
        )
    assert "gpt-4o-mini" in str(info.value) and "local" in str(info.value)


def test_invalid_json_body_is_422(service: RunningService) -> None:
    response = httpx.post(
        f"{service.api}/chat/completions",
        headers={**service.headers(), "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
