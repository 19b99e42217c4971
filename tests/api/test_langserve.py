"""LangServe routes: RemoteRunnable, every endpoint, org/user injected from the token."""

from __future__ import annotations

import httpx
import pytest
from langchain_core.messages import HumanMessage
from langserve import RemoteRunnable

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService


def remote(
    service: RunningService, path: str, org: str = "org-a", user: str = "alice"
) -> RemoteRunnable:
    return RemoteRunnable(f"{service.url}/runnables/{path}", headers=service.headers(org, user))


def test_completion_invoke_stream_batch(service: RunningService, fake_openai: FakeOpenAI) -> None:
    completion = remote(service, "completion")
    assert completion.invoke({"input": "hello"}) == "echo: hello"
    assert "".join(completion.stream({"input": "a b c"})) == "echo: a b c"
    assert completion.batch([{"input": "x"}, {"input": "y"}]) == ["echo: x", "echo: y"]
    assert fake_openai.requests[-1].body["messages"][0]["role"] == "system"


def test_completion_model_and_params_from_config(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    completion = remote(service, "completion")
    completion.invoke(
        {"input": "hi"},
        config={"configurable": {"model": "gpt-4", "temperature": 0, "max_tokens": 7}},
    )
    sent = fake_openai.requests[-1].body
    limit = sent.get("max_completion_tokens", sent.get("max_tokens"))
    assert (sent["model"], sent["temperature"], limit) == ("gpt-4", 0, 7)


def test_unknown_model_in_config_is_400(service: RunningService) -> None:
    response = httpx.post(
        f"{service.url}/runnables/completion/invoke",
        headers=service.headers(),
        json={"input": {"input": "hi"}, "config": {"configurable": {"model": "nope"}}},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_model"


def test_chat_graph_memory_through_remote_runnable(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    chat = remote(service, "chat")
    config = {"configurable": {"thread_id": "ls-1"}}
    chat.invoke({"messages": [{"role": "user", "content": "I like tea"}]}, config=config)
    out = chat.invoke({"messages": [HumanMessage("what do I like?")]}, config=config)
    assert [m.content for m in out["messages"]][-2:] == ["what do I like?", "echo: what do I like?"]
    assert fake_openai.requests[-1].body["messages"][0]["content"] == "I like tea"
    # The thread is the caller's: visible in the REST API, invisible to another org.
    assert (
        httpx.get(f"{service.api}/chat/threads/ls-1", headers=service.headers()).status_code == 200
    )
    assert (
        httpx.get(f"{service.api}/chat/threads/ls-1", headers=service.headers("org-b")).status_code
        == 404
    )
    other = remote(service, "chat", org="org-b", user="mallory")
    theirs = other.invoke({"messages": [{"role": "user", "content": "hi"}]}, config=config)
    assert [m.content for m in theirs["messages"]] == ["hi", "echo: hi"]


def test_client_cannot_inject_org(service: RunningService) -> None:
    chat = remote(service, "chat")
    chat.invoke(
        {"messages": [{"role": "user", "content": "x"}]},
        config={"configurable": {"thread_id": "ls-inj", "org_id": "org-b", "user_id": "mallory"}},
    )
    assert (
        httpx.get(f"{service.api}/chat/threads/ls-inj", headers=service.headers()).status_code
        == 200
    )
    assert (
        httpx.get(
            f"{service.api}/chat/threads/ls-inj", headers=service.headers("org-b", "mallory")
        ).status_code
        == 404
    )


async def test_chat_stream_events_and_log(service: RunningService) -> None:
    chat = remote(service, "chat")
    config = {"configurable": {"thread_id": "ls-stream"}}
    kinds = [
        e["event"]
        async for e in chat.astream_events(
            {"messages": [{"role": "user", "content": "a b"}]}, config=config, version="v2"
        )
    ]
    assert "on_chat_model_stream" in kinds
    patches = [
        p
        async for p in chat.astream_log(
            {"messages": [{"role": "user", "content": "c"}]}, config=config
        )
    ]
    assert patches
    chunks = [
        c
        async for c in chat.astream({"messages": [{"role": "user", "content": "d"}]}, config=config)
    ]
    assert chunks


@pytest.mark.parametrize(
    "payload",
    [
        {"input": {"messages": [{"role": "wizard", "content": "x"}]}},
        {"input": {"messages": "hello"}},
        {"input": {"messages": []}},
        {"input": {}},
        {"input": {"messages": [{"content": "no role"}]}},
    ],
)
def test_malformed_chat_input_is_422(service: RunningService, payload: dict) -> None:
    response = httpx.post(
        f"{service.url}/runnables/chat/invoke", headers=service.headers(), json=payload
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"]


def test_bad_config_is_422(service: RunningService) -> None:
    response = httpx.post(
        f"{service.url}/runnables/chat/invoke",
        headers=service.headers(),
        json={
            "input": {"messages": [{"role": "user", "content": "x"}]},
            "config": {"configurable": {"thread_id": "a b/c"}},
        },
    )
    assert response.status_code == 422


@pytest.mark.parametrize("path", ["chat", "completion"])
def test_schema_endpoints(service: RunningService, path: str) -> None:
    headers = service.headers()
    for endpoint in ("input_schema", "output_schema", "config_schema"):
        response = httpx.get(f"{service.url}/runnables/{path}/{endpoint}", headers=headers)
        assert response.status_code == 200, endpoint
    if path == "chat":
        config = httpx.get(f"{service.url}/runnables/chat/config_schema", headers=headers).json()
        assert "thread_id" in str(config)
