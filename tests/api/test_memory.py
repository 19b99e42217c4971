"""Chat with memory: threads persist across requests (SQLite and PostgreSQL) and stay private."""

from __future__ import annotations

import httpx
import openai

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService


def say(
    service: RunningService,
    text: str,
    thread: str,
    *,
    org: str = "org-a",
    user: str = "alice",
    **extra: object,
) -> httpx.Response:
    return httpx.post(
        f"{service.api}/chat/completions",
        headers=service.headers(org, user),
        json={"messages": [{"role": "user", "content": text}], "thread_id": thread, **extra},
        timeout=30,
    )


def test_thread_remembers_across_requests(db_services, fake_openai: FakeOpenAI) -> None:
    service = db_services.start()
    assert say(service, "my name is Bob", "t1", metadata={"source": "test"}).status_code == 200
    second = say(service, "what is my name?", "t1")
    assert second.status_code == 200
    assert second.json()["choices"][0]["message"]["content"] == "echo: what is my name?"
    sent = [m["content"] for m in fake_openai.requests[-1].body["messages"]]
    assert sent == ["my name is Bob", "echo: my name is Bob", "what is my name?"]

    threads = httpx.get(f"{service.api}/chat/threads", headers=service.headers()).json()
    assert threads["count"] == 1
    assert threads["data"][0]["id"] == "t1"
    assert threads["data"][0]["title"] == "my name is Bob"
    assert threads["data"][0]["metadata"] == {"source": "test"}
    detail = httpx.get(f"{service.api}/chat/threads/t1", headers=service.headers()).json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "user", "assistant"]


def test_thread_survives_a_restart(db_services, fake_openai: FakeOpenAI) -> None:
    first = db_services.start()
    say(first, "remember 42", "t-restart")
    second = db_services.start()  # a second instance on the same database
    say(second, "what number?", "t-restart")
    sent = [m["content"] for m in fake_openai.requests[-1].body["messages"]]
    assert sent[0] == "remember 42"


def test_threads_are_private_to_org_and_user(db_services, fake_openai: FakeOpenAI) -> None:
    service = db_services.start()
    say(service, "secret plan", "shared-id")
    # Another org: cannot read or delete it; the same id starts a separate conversation.
    other = service.headers("org-b", "mallory")
    assert httpx.get(f"{service.api}/chat/threads/shared-id", headers=other).status_code == 404
    assert httpx.delete(f"{service.api}/chat/threads/shared-id", headers=other).status_code == 404
    say(service, "hello", "shared-id", org="org-b", user="mallory")
    sent = [m["content"] for m in fake_openai.requests[-1].body["messages"]]
    assert sent == ["hello"]
    # Another user of the same org: 404 on read and on continue.
    colleague = service.headers("org-a", "bob")
    assert httpx.get(f"{service.api}/chat/threads/shared-id", headers=colleague).status_code == 404
    response = say(service, "let me in", "shared-id", user="bob")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "thread_not_found"
    assert httpx.get(f"{service.api}/chat/threads", headers=colleague).json()["count"] == 0


def test_delete_thread(db_services) -> None:
    service = db_services.start()
    say(service, "hi", "t-del")
    assert (
        httpx.delete(f"{service.api}/chat/threads/t-del", headers=service.headers()).status_code
        == 204
    )
    assert (
        httpx.get(f"{service.api}/chat/threads/t-del", headers=service.headers()).status_code == 404
    )
    say(service, "fresh", "t-del")
    detail = httpx.get(f"{service.api}/chat/threads/t-del", headers=service.headers()).json()
    assert [m["content"] for m in detail["messages"]] == ["fresh", "echo: fresh"]


def test_streamed_turn_is_remembered(db_services, fake_openai: FakeOpenAI) -> None:
    service = db_services.start()
    client = openai.OpenAI(base_url=service.api, api_key=service.token(), max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "first"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"thread_id": "t-stream"},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: first"
    assert chunks[-1].usage is not None
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "second"}],
        extra_body={"thread_id": "t-stream"},
    )
    sent = [m["content"] for m in fake_openai.requests[-1].body["messages"]]
    assert sent == ["first", "echo: first", "second"]


def test_system_prompt_is_kept_once(service: RunningService, fake_openai: FakeOpenAI) -> None:
    for text in ("one", "two"):
        httpx.post(
            f"{service.api}/chat/completions",
            headers=service.headers(),
            json={
                "thread_id": "t-sys",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": text},
                ],
            },
        )
    roles = [m["role"] for m in fake_openai.requests[-1].body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


def test_long_thread_is_trimmed_to_the_context_budget(services, fake_openai: FakeOpenAI) -> None:
    service = services.start(context_windows={"gpt-4o-mini": 600}, memory_reply_reserve_tokens=100)
    for i in range(30):
        say(service, f"message {i} " + "filler " * 30, "t-long")
    sent = fake_openai.requests[-1].body["messages"]
    assert sent[-1]["content"].startswith("message 29")
    assert len(sent) < 59
    assert sent[0]["role"] == "user"
    detail = httpx.get(f"{service.api}/chat/threads/t-long", headers=service.headers()).json()
    assert len(detail["messages"]) == 60  # the thread itself keeps everything


def test_bad_thread_id_is_422(service: RunningService) -> None:
    response = say(service, "x", "../../etc")
    assert response.status_code == 422
    assert "thread_id" in response.json()["error"]["message"]
