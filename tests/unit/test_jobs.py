"""The in-process job queue: bounded, fair between orgs, cancellable, waitable."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jobs.in_process import InProcessJobQueue


async def test_orgs_take_turns_and_workers_are_bounded() -> None:
    queue = InProcessJobQueue(workers=1)
    order: list[str] = []
    running = 0
    peak = 0

    async def work(payload: dict[str, Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        order.append(payload["name"])
        running -= 1

    queue.register("work", work)
    for i in range(5):  # org-a's bulk upload first...
        await queue.enqueue("work", {"name": f"a{i}"}, org_id="org-a", job_id=f"a{i}")
    await queue.enqueue("work", {"name": "b0"}, org_id="org-b", job_id="b0")  # ...then org-b
    await queue.start()
    try:
        assert await queue.wait("a4", 5) == "done"
    finally:
        await queue.aclose()
    assert peak == 1
    assert order.index("b0") <= 1  # org-b waited for at most one of org-a's jobs


async def test_cancel_queued_and_running_jobs() -> None:
    queue = InProcessJobQueue(workers=1)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow(_: dict[str, Any]) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    queue.register("slow", slow)
    await queue.start()
    try:
        await queue.enqueue("slow", {}, org_id="o", job_id="running")
        await queue.enqueue("slow", {}, org_id="o", job_id="queued")
        await asyncio.wait_for(started.wait(), 5)
        assert await queue.cancel("queued") is True
        assert queue.state("queued") == "cancelled"
        assert await queue.cancel("running") is True
        assert await queue.wait("running", 5) == "cancelled"
        assert cancelled.is_set()
        assert await queue.cancel("running") is False  # finished
        assert await queue.cancel("nope") is False
    finally:
        await queue.aclose()


async def test_failures_are_contained_and_enqueue_is_idempotent() -> None:
    queue = InProcessJobQueue(workers=2)
    calls: list[str] = []

    async def flaky(payload: dict[str, Any]) -> None:
        calls.append(payload["n"])
        if payload["n"] == "bad":
            raise RuntimeError("boom")

    queue.register("flaky", flaky)
    await queue.start()
    try:
        await queue.enqueue("flaky", {"n": "bad"}, org_id="o", job_id="bad")
        assert await queue.wait("bad", 5) == "failed"
        await queue.enqueue("flaky", {"n": "ok"}, org_id="o", job_id="ok")
        await queue.enqueue("flaky", {"n": "ok"}, org_id="o", job_id="ok")
        assert await queue.wait("ok", 5) == "done"
        assert calls.count("ok") in (1, 2)  # a second enqueue after completion runs again
        assert await queue.wait("unknown", 0.01) == "unknown"
        with pytest.raises(KeyError):
            await queue.enqueue("nope", {}, org_id="o", job_id="x")
    finally:
        await queue.aclose()
