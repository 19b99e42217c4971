"""``POST /api/chat/batch``: per-item results and errors, bounded concurrency, accounting."""

from __future__ import annotations

import time

import httpx

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService


def item(text: str, **extra: object) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def test_each_item_gets_its_own_result(service: RunningService, fake_openai: FakeOpenAI) -> None:
    body = {
        "requests": [
            item("one"),
            item("two", model="gpt-9"),
            {"messages": "not a list"},
            item("four", stream=True),
            item("five", thread_id="batch-t"),
        ]
    }
    response = httpx.post(
        f"{service.api}/chat/batch", headers=service.headers(), json=body, timeout=30
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert results[0]["response"]["choices"][0]["message"]["content"] == "echo: one"
    assert results[1]["error"]["code"] == "unknown_model" and results[1]["error"]["status"] == 400
    assert results[2]["error"]["code"] == "invalid_request" and results[2]["error"]["status"] == 422
    assert results[3]["error"]["code"] == "unsupported_parameter"
    assert results[4]["response"]["choices"][0]["message"]["content"] == "echo: five"


def test_items_run_concurrently_but_bounded(services, fake_openai: FakeOpenAI) -> None:
    service = services.start(batch_concurrency=4)
    fake_openai.delay_next(0.3, times=8)
    started = time.monotonic()
    response = httpx.post(
        f"{service.api}/chat/batch",
        headers=service.headers(),
        json={"requests": [item(str(i)) for i in range(8)]},
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert all("response" in r and r["response"] for r in response.json()["results"])
    assert 0.55 < elapsed < 2.0  # two waves of four, not eight in a row nor all at once


def test_batch_items_are_accounted_one_by_one(service: RunningService) -> None:
    httpx.post(
        f"{service.api}/chat/batch",
        headers=service.headers(),
        json={"requests": [item("a"), item("b"), item("c")]},
        timeout=30,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = httpx.get(
            f"{service.api}/usage", headers=service.headers(), params={"group_by": "route"}
        ).json()
        if body["totals"]["requests"] >= 3:
            break
        time.sleep(0.05)
    assert body["groups"] == [{**body["groups"][0], "key": "chat.batch", "requests": 3}]


def test_batch_limits(services) -> None:
    service = services.start(batch_max_items=2)
    too_many = httpx.post(
        f"{service.api}/chat/batch", headers=service.headers(), json={"requests": [item("a")] * 3}
    )
    assert too_many.status_code == 413
    assert too_many.json()["error"]["code"] == "batch_too_large"
    empty = httpx.post(
        f"{service.api}/chat/batch", headers=service.headers(), json={"requests": []}
    )
    assert empty.status_code == 422
