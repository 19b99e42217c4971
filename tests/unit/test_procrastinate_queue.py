"""The procrastinate job queue on the real PostgreSQL: runs, retries, cancels, takes turns."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from jobs.procrastinate_queue import Backoff, ProcrastinateJobQueue, WorkerOptions

pytestmark = pytest.mark.postgres

QueueFactory = Callable[..., ProcrastinateJobQueue]


@pytest.fixture
async def queues(pg_url: str) -> AsyncIterator[QueueFactory]:
    """Queues on a schema of this test's own (dropped with the session's database)."""
    schema = f"ahc_jobs_{uuid.uuid4().hex[:8]}"
    made: list[ProcrastinateJobQueue] = []

    def make(worker: WorkerOptions | None = None, **retry: Any) -> ProcrastinateJobQueue:
        backoff = Backoff(**{"max_attempts": 3, "first": 0.1, "cap": 0.2, **retry})
        queue = ProcrastinateJobQueue(
            database_url=pg_url, schema=schema, retry=backoff, worker=worker
        )
        made.append(queue)
        return queue

    yield make
    for queue in reversed(made):
        await queue.aclose()


FAST = WorkerOptions(concurrency=2, stalled_seconds=2.0, poll_seconds=0.2, shutdown_seconds=0.5)


async def test_a_job_runs_once_and_its_state_is_visible(queues: QueueFactory) -> None:
    runs: list[dict[str, Any]] = []

    async def work(payload: dict[str, Any]) -> None:
        runs.append(payload)

    api = queues()  # enqueues only, as an API process with job_run_in_api=false
    api.register("area.work", work)
    await api.start()
    await api.enqueue("area.work", {"n": 1}, org_id="org-a", job_id="j1")
    await api.enqueue("area.work", {"n": 1}, org_id="org-a", job_id="j1")  # idempotent
    assert await api.state("j1") == "queued"
    assert await api.wait("j1", 0.2) == "queued"
    worker = queues(FAST)
    worker.register("area.work", work)
    await worker.start()
    assert await api.wait("j1", 10) == "done"
    assert runs == [{"n": 1}]
    assert await api.state("nope") == "unknown"
    assert await api.cancel("j1") is False  # finished


async def test_transient_failures_are_retried_others_are_not(queues: QueueFactory) -> None:
    calls: dict[str, int] = {"flaky": 0, "broken": 0}

    async def flaky(payload: dict[str, Any]) -> None:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise ConnectionError("database went away")

    async def broken(payload: dict[str, Any]) -> None:
        calls["broken"] += 1
        raise ValueError("a bug, not the network")

    queue = queues(FAST)
    queue.register("area.flaky", flaky)
    queue.register("area.broken", broken)
    await queue.start()
    await queue.enqueue("area.flaky", {}, org_id="org-a", job_id="flaky")
    await queue.enqueue("area.broken", {}, org_id="org-a", job_id="broken")
    assert await queue.wait("flaky", 10) == "done"
    assert await queue.wait("broken", 10) == "failed"
    assert calls == {"flaky": 2, "broken": 1}


async def test_cancel_a_queued_and_a_running_job(queues: QueueFactory) -> None:
    started = asyncio.Event()
    stopped: list[str] = []

    async def slow(payload: dict[str, Any]) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.append(payload["name"])
            raise

    api = queues()
    api.register("area.slow", slow)
    await api.start()
    await api.enqueue("area.slow", {"name": "queued"}, org_id="org-a", job_id="q")
    assert await api.cancel("q") is True
    assert await api.state("q") == "cancelled"
    worker = queues(FAST)
    worker.register("area.slow", slow)
    await worker.start()
    await api.enqueue("area.slow", {"name": "running"}, org_id="org-a", job_id="r")
    await asyncio.wait_for(started.wait(), 10)
    assert await api.state("r") == "running"
    assert await api.cancel("r") is True
    assert await api.wait("r", 10) == "cancelled"
    await asyncio.sleep(0.5)
    assert stopped == ["running"]  # stopped once, not retried


async def test_orgs_take_turns(queues: QueueFactory) -> None:
    order: list[str] = []

    async def work(payload: dict[str, Any]) -> None:
        order.append(payload["name"])

    api = queues()
    api.register("area.work", work)
    await api.start()
    for i in range(4):  # org-a's bulk upload first...
        await api.enqueue("area.work", {"name": f"a{i}"}, org_id="org-a", job_id=f"a{i}")
    await api.enqueue("area.work", {"name": "b0"}, org_id="org-b", job_id="b0")  # ...then org-b
    worker = queues(WorkerOptions(concurrency=1, poll_seconds=0.2))
    worker.register("area.work", work)
    await worker.start()
    assert await api.wait("a3", 10) == "done"
    assert order[:2] == ["a0", "b0"]  # org-b's only job does not wait for org-a's bulk


async def test_a_stopping_worker_hands_its_job_back(queues: QueueFactory) -> None:
    started = asyncio.Event()
    runs = 0

    async def slow(payload: dict[str, Any]) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            started.set()
            await asyncio.sleep(30)

    api = queues()
    api.register("area.slow", slow)
    await api.start()
    first = queues(FAST)
    first.register("area.slow", slow)
    await first.start()
    await api.enqueue("area.slow", {}, org_id="org-a", job_id="s")
    await asyncio.wait_for(started.wait(), 10)
    await first.aclose()  # a graceful stop (SIGTERM) mid-job
    assert await api.state("s") == "queued"
    second = queues(FAST)
    second.register("area.slow", slow)
    await second.start()
    assert await api.wait("s", 10) == "done"
    assert runs == 2


async def test_a_job_whose_workers_keep_dying_is_abandoned(queues: QueueFactory) -> None:
    """Stalls count as deliveries: the last one is not re-queued but handed to ``abandon``."""
    runs: list[str] = []
    abandoned: list[tuple[dict[str, Any], str]] = []
    done = asyncio.Event()

    async def work(payload: dict[str, Any]) -> None:
        runs.append(payload["name"])

    async def abandon(payload: dict[str, Any], reason: str) -> None:
        abandoned.append((payload, reason))
        done.set()

    api = queues()  # max_attempts=3
    api.register("area.poison", work, abandon)
    await api.start()
    for name in ("poison", "survivor"):
        await api.enqueue("area.poison", {"name": name}, org_id="org-a", job_id=name)
    # As a dead worker leaves them: running, with no live worker; "poison" already died twice.
    await api.app.connector.execute_query_async(
        "UPDATE procrastinate_jobs SET status = 'doing', worker_id = NULL, "
        "attempts = CASE lock WHEN 'poison' THEN 2 ELSE 0 END"
    )
    worker = queues(FAST)
    worker.register("area.poison", work, abandon)
    await worker.start()
    assert await api.wait("survivor", 15) == "done"  # re-queued and run
    await asyncio.wait_for(done.wait(), 15)
    assert await api.state("poison") == "failed"
    assert runs == ["survivor"]
    assert abandoned == [({"name": "poison"}, "its worker stopped during each of 3 attempts")]
