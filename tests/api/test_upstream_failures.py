"""Retries with backoff, the error mapping once they are exhausted, and client disconnects."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService

MESSAGE = {"messages": [{"role": "user", "content": "hi"}]}


def post(service: RunningService, body: dict | None = None, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{service.api}/chat/completions",
        headers=service.headers(),
        json={**(body or MESSAGE), **extra},
        timeout=30,
    )


def hang_up_mid_stream(service: RunningService, fake: FakeOpenAI, path: str, body: dict) -> None:
    """Start a long (4 s) stream, read its first events, and go away."""
    fake.reply = " ".join(f"w{i}" for i in range(200))
    fake.token_delay = 0.02
    with httpx.stream("POST", f"{service.api}{path}", headers=service.headers(), json=body) as r:
        lines = r.iter_lines()
        for _ in range(4):
            next(lines)


def upstream_cancelled(fake: FakeOpenAI, within: float = 2.0) -> bool:
    """Whether the service closed its upstream stream long before the stream's end."""
    return fake.client_disconnected.wait(within)


def test_429_then_success_is_retried(service: RunningService, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=429, retry_after="0", times=2)
    response = post(service)
    assert response.status_code == 200
    assert len(fake_openai.requests) == 3


def test_retry_after_is_honoured(services, fake_openai: FakeOpenAI) -> None:
    service = services.start(upstream_backoff_max_seconds=5.0)
    fake_openai.fail_next(status=429, retry_after="1", times=1)
    started = time.monotonic()
    assert post(service).status_code == 200
    assert time.monotonic() - started >= 0.9


def test_429_exhausted_maps_to_429_with_retry_after(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail_next(status=429, retry_after="0", times=10)
    response = post(service)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert "openai" in response.json()["error"]["message"]
    assert int(response.headers["Retry-After"]) >= 1
    assert len(fake_openai.requests) == 3  # 1 + upstream_max_retries (2)


def test_5xx_exhausted_maps_to_502(service: RunningService, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=500, times=10)
    response = post(service)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


def test_timeout_maps_to_504(services, fake_openai: FakeOpenAI) -> None:
    service = services.start(upstream_timeout_seconds=0.3, upstream_max_retries=1)
    fake_openai.delay_next(2.0, times=5)
    response = post(service)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_stream_errors_before_first_byte_keep_their_status(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail_next(status=429, retry_after="2", times=10)
    response = post(service, stream=True)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"


@pytest.mark.parametrize("thread", [False, True])
def test_memory_path_maps_errors_the_same_way(
    service: RunningService, fake_openai: FakeOpenAI, thread: bool
) -> None:
    fake_openai.fail_next(status=500, times=10)
    body = {**MESSAGE, "thread_id": "t-err"} if thread else MESSAGE
    response = post(service, body)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


def test_failed_turn_leaves_no_dangling_message(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail_next(status=500, times=3)  # 1 + 2 retries
    assert post(service, {**MESSAGE, "thread_id": "t-rollback"}).status_code == 502
    assert (
        post(
            service, {"messages": [{"role": "user", "content": "again"}], "thread_id": "t-rollback"}
        ).status_code
        == 200
    )
    detail = httpx.get(f"{service.api}/chat/threads/t-rollback", headers=service.headers()).json()
    assert [m["content"] for m in detail["messages"]] == ["again", "echo: again"]


def test_client_disconnect_cancels_upstream(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    hang_up_mid_stream(service, fake_openai, "/chat/completions", {**MESSAGE, "stream": True})
    assert upstream_cancelled(fake_openai)


def test_chat_openai_errors_reach_langchain_clients(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    from langchain_openai import ChatOpenAI

    fake_openai.fail_next(status=429, retry_after="0", times=10)
    llm = ChatOpenAI(base_url=service.api, api_key=service.token(), max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        llm.invoke([HumanMessage("hi")])
    assert info.value.body["code"] == "upstream_rate_limited"  # type: ignore[index]


def test_client_disconnect_on_a_thread_cancels_upstream_and_rolls_back(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    body = {"messages": [{"role": "user", "content": "long story"}], "thread_id": "t-cut"}
    hang_up_mid_stream(service, fake_openai, "/chat/stream", body)
    assert upstream_cancelled(fake_openai)
    time.sleep(0.2)
    fake_openai.reply, fake_openai.token_delay = None, 0.0
    post(service, {"messages": [{"role": "user", "content": "short"}], "thread_id": "t-cut"})
    sent = [m["content"] for m in fake_openai.requests[-1].body["messages"]]
    assert sent == ["short"]  # the interrupted turn was taken back
