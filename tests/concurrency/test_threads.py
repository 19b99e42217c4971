"""Concurrent turns on one thread (issue 17, items 1, 5 and 6), with real concurrency.

Requests run together (``asyncio.gather`` of ``httpx.AsyncClient`` calls) against the live
service, on SQLite and PostgreSQL; the fake upstream answers slowly so that unserialized
turns would overlap. Every turn answered 200 must be kept, in an order that is a valid
conversation: user, assistant, user, assistant..., each answer after its own question.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis

from tests.fakes.openai_server import FakeOpenAI
from tests.support.knowledge import upload
from tests.support.service import RunningService, ServiceFactory

_WORD = re.compile(r"\bw\d+")
TURNS = 5
SLOW = 0.15  # seconds the fake upstream takes per answer: wide enough for turns to overlap


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as http:
        yield http


def user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def chat_turn(
    http: httpx.AsyncClient,
    service: RunningService,
    thread: str,
    text: str,
    *,
    path: str = "/chat/completions",
    stream: bool = False,
) -> httpx.Response:
    body: dict[str, Any] = {"messages": user_turn(text), "thread_id": thread}
    if stream:
        body["stream"] = True
    response = await http.post(f"{service.api}{path}", headers=service.headers(), json=body)
    if stream and response.status_code == 200:
        assert "[DONE]" in response.text, response.text
    return response


async def thread_detail(
    http: httpx.AsyncClient, service: RunningService, thread: str
) -> dict[str, Any]:
    response = await http.get(f"{service.api}/chat/threads/{thread}", headers=service.headers())
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


def assert_conversation(messages: list[dict[str, Any]], questions: list[str]) -> None:
    """Every question once, each directly followed by its own answer (the fake echoes it)."""
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant"] * len(questions), roles
    asked = [m["content"] for m in messages[0::2]]
    assert sorted(asked) == sorted(questions), asked
    for question, answer in zip(messages[0::2], messages[1::2], strict=True):
        assert answer["content"] == f"echo: {question['content']}", (question, answer)


def assert_turn_pairs(messages: list[dict[str, Any]], questions: list[str]) -> None:
    """RAG turns: question, answer, question, answer... every question once."""
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant"] * len(questions), roles
    assert sorted(m["content"] for m in messages[0::2]) == sorted(questions)


# --- item 1: every turn kept, in a valid order ----------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["completions", "stream"])
async def test_concurrent_turns_on_one_thread_are_all_kept(
    db_services: ServiceFactory,
    fake_openai: FakeOpenAI,
    client: httpx.AsyncClient,
    stream: bool,
) -> None:
    service = db_services.start()
    thread = f"t-race-{'stream' if stream else 'plain'}"  # PG keeps checkpoints per session
    assert (await chat_turn(client, service, thread, "first")).status_code == 200
    fake_openai.delay_next(SLOW, times=TURNS)
    questions = [f"q{i}" for i in range(TURNS)]
    path = "/chat/stream" if stream else "/chat/completions"
    responses = await asyncio.gather(
        *(chat_turn(client, service, thread, q, path=path, stream=stream) for q in questions)
    )
    assert [r.status_code for r in responses] == [200] * TURNS, [r.text for r in responses]
    detail = await thread_detail(client, service, thread)
    assert_conversation(detail["messages"], ["first", *questions])


async def test_batch_items_sharing_a_thread_are_all_kept(
    db_services: ServiceFactory, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    service = db_services.start()
    fake_openai.delay_next(SLOW, times=8)
    questions = [f"b{i}" for i in range(4)]
    items = [{"messages": user_turn(q), "thread_id": "t-batch"} for q in questions]
    items.append({"messages": user_turn("elsewhere"), "thread_id": "t-other"})
    response = await client.post(
        f"{service.api}/chat/batch", headers=service.headers(), json={"requests": items}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert all("response" in r for r in results), results
    detail = await thread_detail(client, service, "t-batch")
    assert_conversation(detail["messages"], questions)
    # Items of one thread run in the batch's order (a batch is one conversation script).
    assert [m["content"] for m in detail["messages"][0::2]] == questions
    other = await thread_detail(client, service, "t-other")
    assert_conversation(other["messages"], ["elsewhere"])


async def test_runnable_chat_batch_with_one_thread_keeps_every_turn(
    db_services: ServiceFactory, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    service = db_services.start()
    fake_openai.delay_next(SLOW, times=4)
    questions = [f"r{i}" for i in range(4)]
    response = await client.post(
        f"{service.url}/runnables/chat/batch",
        headers=service.headers(),
        json={
            "inputs": [{"messages": user_turn(q)} for q in questions],
            "config": {"configurable": {"thread_id": "t-ls-batch"}},
        },
    )
    assert response.status_code == 200, response.text
    detail = await thread_detail(client, service, "t-ls-batch")
    assert_conversation(detail["messages"], questions)


async def test_concurrent_runnable_chat_calls_on_one_thread_are_all_kept(
    db_services: ServiceFactory, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    service = db_services.start()
    fake_openai.delay_next(SLOW, times=6)
    config = {"configurable": {"thread_id": "t-ls"}}

    async def call(endpoint: str, text: str) -> httpx.Response:
        return await client.post(
            f"{service.url}/runnables/chat/{endpoint}",
            headers=service.headers(),
            json={"input": {"messages": user_turn(text)}, "config": config},
        )

    calls = [("invoke", f"i{i}") for i in range(3)] + [("stream", f"s{i}") for i in range(3)]
    responses = await asyncio.gather(*(call(e, t) for e, t in calls))
    assert [r.status_code for r in responses] == [200] * len(calls)
    assert all("event: error" not in r.text for r in responses), [r.text for r in responses]
    detail = await thread_detail(client, service, "t-ls")
    assert_conversation(detail["messages"], [t for _, t in calls])


VPN = (
    "IT handbook. The office VPN client is GlobalProtect. Connect to vpn.example.com with "
    "your SSO login. The helpdesk phone extension is 4242."
)


async def test_concurrent_knowledge_queries_on_one_thread_are_all_kept(
    db_services: ServiceFactory, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    service = db_services.start()
    assert upload(service, [("it.txt", VPN.encode())]).status_code == 201
    fake_openai.reply = "Use GlobalProtect [1]"

    async def ask(question: str, stream: bool) -> httpx.Response:
        return await client.post(
            f"{service.api}/knowledge/query",
            headers=service.headers(),
            json={"question": question, "thread_id": "t-rag", "stream": stream},
        )

    assert (await ask("Which VPN client do we use?", False)).status_code == 200
    fake_openai.delay_next(SLOW, times=20)  # follow-ups: a rewrite and an answer each
    questions = [f"What about the VPN client, part {i}?" for i in range(4)]
    responses = await asyncio.gather(*(ask(q, i % 2 == 1) for i, q in enumerate(questions)))
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    assert all('"type":"error"' not in r.text for r in responses)
    detail = await thread_detail(client, service, "t-rag")
    assert_turn_pairs(detail["knowledge_messages"], ["Which VPN client do we use?", *questions])


async def test_runnable_rag_batch_with_one_thread_keeps_every_turn(
    db_services: ServiceFactory, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    service = db_services.start()
    assert upload(service, [("it.txt", VPN.encode())]).status_code == 201
    fake_openai.reply = "Use GlobalProtect [1]"
    fake_openai.delay_next(SLOW, times=10)
    questions = [f"Which VPN client, take {i}?" for i in range(3)]
    response = await client.post(
        f"{service.url}/runnables/rag/batch",
        headers=service.headers(),
        json={
            "inputs": [{"question": q} for q in questions],
            "config": {"configurable": {"thread_id": "t-ls-rag"}},
        },
    )
    assert response.status_code == 200, response.text
    detail = await thread_detail(client, service, "t-ls-rag")
    assert_turn_pairs(detail["knowledge_messages"], questions)


async def test_a_turn_that_waits_too_long_is_409_thread_busy(
    services: ServiceFactory, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    service = services.start(thread_lock_wait_seconds=0.3)
    fake_openai.delay_next(1.5)
    slow = asyncio.create_task(chat_turn(client, service, "t-busy", "slow"))
    await asyncio.sleep(0.3)
    busy = await chat_turn(client, service, "t-busy", "impatient")
    assert busy.status_code == 409, busy.text
    assert busy.json()["error"]["code"] == "thread_busy"
    assert int(busy.headers["retry-after"]) >= 1
    assert (await slow).status_code == 200
    assert (await chat_turn(client, service, "t-busy", "later")).status_code == 200
    detail = await thread_detail(client, service, "t-busy")
    assert_conversation(detail["messages"], ["slow", "later"])


async def test_a_delete_waits_for_the_running_turn(
    db_services: ServiceFactory, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    service = db_services.start()
    thread = f"t-del-{uuid.uuid4().hex[:8]}"
    assert (await chat_turn(client, service, thread, "first")).status_code == 200
    fake_openai.delay_next(1.0)
    slow = asyncio.create_task(chat_turn(client, service, thread, "slow"))
    await asyncio.sleep(0.3)
    deleted = await client.delete(f"{service.api}/chat/threads/{thread}", headers=service.headers())
    assert deleted.status_code == 204, deleted.text
    assert (await slow).status_code == 200
    # Nothing of the deleted conversation remains: the running turn did not write after it.
    assert (await chat_turn(client, service, thread, "again")).status_code == 200
    detail = await thread_detail(client, service, thread)
    assert_conversation(detail["messages"], ["again"])


@pytest.mark.postgres
async def test_two_instances_serialize_turns_through_redis(
    pg_url: str, tmp_path: Any, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    from tests.conftest import empty_service_tables

    factory = ServiceFactory(tmp_path, fake_openai.base_url, pg_url)
    empty_service_tables(factory)
    prefix = f"ahc-test-{uuid.uuid4().hex[:8]}:"
    common = {"redis_url": "redis://127.0.0.1:6379/0", "redis_prefix": prefix}
    try:
        first, second = factory.start(**common), factory.start(**common)
        assert (await chat_turn(client, first, "t-two", "first")).status_code == 200
        fake_openai.delay_next(SLOW, times=2 * TURNS)
        questions = [f"q{i}" for i in range(2 * TURNS)]
        responses = await asyncio.gather(
            *(
                chat_turn(client, first if i % 2 else second, "t-two", q, stream=i % 3 == 0)
                for i, q in enumerate(questions)
            )
        )
        assert [r.status_code for r in responses] == [200] * len(questions)
        for instance in (first, second):
            detail = await thread_detail(client, instance, "t-two")
            assert_conversation(detail["messages"], ["first", *questions])
    finally:
        factory.close()
        connection = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        if keys := connection.keys(f"{prefix}*"):
            connection.delete(*keys)


# --- item 5: abandoned streams are accounted with what they delivered ----------------------


async def usage_rows(
    http: httpx.AsyncClient, service: RunningService, expected: int
) -> list[dict[str, str]]:
    """The org's usage events (written off the request path: polled until they land)."""
    deadline = time.monotonic() + 10
    while True:
        response = await http.get(
            f"{service.api}/usage/export",
            params={"format": "csv"},
            headers=service.headers("org-a", "alice", "admin"),
        )
        rows = list(csv.DictReader(io.StringIO(response.text)))
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def hang_up_after(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any], tokens: int
) -> None:
    """Read ``tokens`` content events of a stream, then go away."""
    received = 0
    async with http.stream("POST", url, headers=headers, json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            received += line.startswith("data:") and _WORD.search(line) is not None
            if received >= tokens:
                break


async def test_an_abandoned_thread_stream_records_its_delivered_tokens(
    db_services: ServiceFactory, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    service = db_services.start()
    fake_openai.reply = " ".join(f"w{i}" for i in range(300))
    fake_openai.token_delay = 0.01
    body = {"messages": user_turn("tell me"), "thread_id": "t-cut", "stream": True}
    await hang_up_after(client, f"{service.api}/chat/stream", service.headers(), body, 50)
    assert fake_openai.client_disconnected.wait(3)
    [row] = await usage_rows(client, service, 1)
    assert row["status"] == "ok" and not row["error_code"], row
    assert row["estimated"] in ("True", "true", "1")
    assert 50 <= int(row["completion_tokens"]) < 300
    assert int(row["prompt_tokens"]) > 0
    await asyncio.sleep(0.3)
    assert len(await usage_rows(client, service, 2)) == 1  # one event, not one per path


async def test_an_abandoned_runnable_completion_stream_is_not_an_error(
    db_services: ServiceFactory, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    service = db_services.start()
    fake_openai.reply = " ".join(f"w{i}" for i in range(300))
    fake_openai.token_delay = 0.01
    url = f"{service.url}/runnables/completion/stream"
    await hang_up_after(client, url, service.headers(), {"input": {"input": "go"}}, 30)
    assert fake_openai.client_disconnected.wait(3)
    [row] = await usage_rows(client, service, 1)
    assert row["status"] == "ok" and not row["error_code"], row
    assert row["estimated"] in ("True", "true", "1")
    assert 30 <= int(row["completion_tokens"]) < 300


# --- item 6: a first turn that is not kept leaves no thread ---------------------------------


async def threads_listed(http: httpx.AsyncClient, service: RunningService) -> list[str]:
    response = await http.get(f"{service.api}/chat/threads", headers=service.headers())
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["data"]]


async def test_a_failed_first_turn_leaves_no_ghost_thread(
    db_services: ServiceFactory, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    service = db_services.start()
    fake_openai.fail_next(status=500, times=3)  # 1 + 2 retries
    failed = await chat_turn(client, service, "t-ghost", "hello")
    assert failed.status_code == 502
    assert await threads_listed(client, service) == []
    lost = await client.get(f"{service.api}/chat/threads/t-ghost", headers=service.headers())
    assert lost.status_code == 404
    # The id is free again, and a thread that already had turns survives a failed one.
    assert (await chat_turn(client, service, "t-ghost", "again")).status_code == 200
    fake_openai.fail_next(status=500, times=3)
    assert (await chat_turn(client, service, "t-ghost", "fails")).status_code == 502
    assert await threads_listed(client, service) == ["t-ghost"]
    assert_conversation((await thread_detail(client, service, "t-ghost"))["messages"], ["again"])


async def test_an_abandoned_first_turn_leaves_no_ghost_thread(
    db_services: ServiceFactory, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    service = db_services.start()
    fake_openai.reply = " ".join(f"w{i}" for i in range(300))
    fake_openai.token_delay = 0.01
    body = {"messages": user_turn("tell me"), "thread_id": "t-gone", "stream": True}
    await hang_up_after(client, f"{service.api}/chat/stream", service.headers(), body, 5)
    assert fake_openai.client_disconnected.wait(3)
    for _ in range(60):  # the rollback runs after the client has gone
        if not await threads_listed(client, service):
            break
        await asyncio.sleep(0.05)
    assert await threads_listed(client, service) == []


async def test_a_failed_first_knowledge_query_leaves_no_ghost_thread(
    db_services: ServiceFactory, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    service = db_services.start()
    assert upload(service, [("it.txt", VPN.encode())]).status_code == 201
    fake_openai.fail_next(status=500, times=3)
    response = await client.post(
        f"{service.api}/knowledge/query",
        headers=service.headers(),
        json={"question": "Which VPN client do we use?", "thread_id": "t-rag-ghost"},
    )
    assert response.status_code == 502, response.text
    assert await threads_listed(client, service) == []


async def test_a_failed_first_runnable_turn_leaves_no_ghost_thread(
    db_services: ServiceFactory, fake_openai: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    service = db_services.start()

    async def invoke(text: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=60) as fresh:  # a failed run closes its connection
            return await fresh.post(
                f"{service.url}/runnables/chat/invoke",
                headers=service.headers(),
                json={
                    "input": {"messages": user_turn(text)},
                    "config": {"configurable": {"thread_id": "t-ls-ghost"}},
                },
            )

    fake_openai.fail_next(status=500, times=3)  # 1 + 2 retries
    failed = await invoke("hello")
    assert failed.status_code >= 500, failed.text
    assert await threads_listed(client, service) == []
    # The id is free again; a thread that already had turns survives a failed one.
    assert (await invoke("again")).status_code == 200
    fake_openai.fail_next(status=500, times=3)
    assert (await invoke("fails")).status_code >= 500
    assert await threads_listed(client, service) == ["t-ls-ghost"]
