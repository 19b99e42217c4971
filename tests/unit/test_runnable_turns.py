"""LangServe-side turn serialization: every entry point holds the thread's lock per run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig, RunnableGenerator, RunnableLambda

from api.runnable_turns import serialize_turns
from core.errors import ApiError
from services.turn_locks import MemoryTurnLocks


class Probe:
    """A runnable that notes how many runs of each thread overlap."""

    def __init__(self) -> None:
        self.inside: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.order: list[Any] = []

    async def run(self, inputs: AsyncIterator[Any], config: RunnableConfig) -> AsyncIterator[Any]:
        thread = (config.get("configurable") or {}).get("thread_id", "-")
        async for value in inputs:
            self.inside[thread] = self.inside.get(thread, 0) + 1
            self.peak[thread] = max(self.peak.get(thread, 0), self.inside[thread])
            try:
                for part in range(3):
                    await asyncio.sleep(0.01)
                    yield f"{value}.{part}"
                self.order.append(value)
            finally:
                self.inside[thread] -= 1


def config(thread: str | None) -> RunnableConfig:
    return {"configurable": {"thread_id": thread}} if thread else {}


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def locks() -> MemoryTurnLocks:
    return MemoryTurnLocks(wait_seconds=5)


def served(probe: Probe, locks: MemoryTurnLocks) -> Any:
    return serialize_turns(RunnableGenerator(probe.run), lambda: locks)


@pytest.mark.filterwarnings("ignore:astream_log is deprecated")
async def test_invokes_and_streams_of_one_thread_take_turns(
    probe: Probe, locks: MemoryTurnLocks
) -> None:
    runnable = served(probe, locks)

    async def stream(value: str) -> list[Any]:
        return [c async for c in runnable.astream(value, config("t1"))]

    async def events(value: str) -> list[Any]:
        return [e async for e in runnable.astream_events(value, config("t1"), version="v2")]

    async def log(value: str) -> list[Any]:
        return [p async for p in runnable.astream_log(value, config("t1"))]

    await asyncio.gather(
        runnable.ainvoke("a", config("t1")),
        runnable.ainvoke("b", config("t1")),
        stream("c"),
        events("d"),
        log("e"),
        runnable.ainvoke("x", config("t2")),
        runnable.ainvoke("y", config(None)),
    )
    assert probe.peak["t1"] == 1
    assert sorted(probe.order) == ["a", "b", "c", "d", "e", "x", "y"]
    assert len(locks) == 0


async def test_batch_items_of_one_thread_run_in_order(probe: Probe, locks: MemoryTurnLocks) -> None:
    runnable = served(probe, locks)
    out = await runnable.abatch(["a", "b", "c"], config("t1"))
    assert len(out) == 3
    assert probe.peak["t1"] == 1
    assert probe.order == ["a", "b", "c"]
    await runnable.abatch(["d", "e"], [config("t2"), config("t3")])
    assert probe.peak["t2"] == probe.peak["t3"] == 1


async def test_a_dropped_stream_releases_the_thread(probe: Probe, locks: MemoryTurnLocks) -> None:
    runnable = served(probe, locks)

    async def hang_up() -> None:
        async for _ in runnable.astream("a", config("t1")):
            await asyncio.sleep(30)

    task = asyncio.create_task(hang_up())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(1):
        await runnable.ainvoke("b", config("t1"))
    assert len(locks) == 0


async def test_a_busy_thread_is_a_409(probe: Probe) -> None:
    locks = MemoryTurnLocks(wait_seconds=0.01)
    runnable = served(probe, locks)
    results = await asyncio.gather(
        runnable.ainvoke("a", config("t1")),
        runnable.ainvoke("b", config("t1")),
        return_exceptions=True,
    )
    assert any(isinstance(r, ApiError) and r.code == "thread_busy" for r in results)


async def test_batch_errors_are_returned_or_raised(locks: MemoryTurnLocks) -> None:
    def answer(value: str) -> str:
        if value == "bad":
            raise ValueError(value)
        return value.upper()

    runnable = serialize_turns(RunnableLambda(answer), lambda: locks)
    out = await runnable.abatch(
        ["a", "bad", "c"], config("t1") | {"max_concurrency": 1}, return_exceptions=True
    )
    assert out[0] == "A" and isinstance(out[1], ValueError) and out[2] == "C"
    with pytest.raises(ValueError):
        await runnable.abatch(["a", "bad"], config("t1"))
    assert len(locks) == 0
