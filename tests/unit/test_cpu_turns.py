"""CpuTurns: at most ``limit`` holders, admitted in arrival order; 0 admits everyone."""

from __future__ import annotations

import asyncio

from core.config import Settings
from core.cpu_turns import CpuTurns


async def _holders(turns: CpuTurns, count: int) -> tuple[list[str], int]:
    """Start ``count`` holders in order; the event log and the most holding at once."""
    log: list[str] = []
    holding = 0
    most = 0

    async def hold(name: str) -> None:
        nonlocal holding, most
        async with turns.turn():
            holding += 1
            most = max(most, holding)
            log.append(f"in {name}")
            for _ in range(3):  # yield to the loop while holding, like awaited reads
                await asyncio.sleep(0)
            log.append(f"out {name}")
            holding -= 1

    await asyncio.gather(*(hold(str(i)) for i in range(count)))
    return log, most


async def test_one_turn_at_a_time_in_arrival_order() -> None:
    log, most = await _holders(CpuTurns(1), 4)
    assert most == 1
    assert log == [f"{step} {i}" for i in range(4) for step in ("in", "out")]


async def test_a_limit_of_two_admits_two() -> None:
    _, most = await _holders(CpuTurns(2), 5)
    assert most == 2


async def test_zero_admits_everyone() -> None:
    log, most = await _holders(CpuTurns(0), 4)
    assert most == 4
    assert log[:4] == [f"in {i}" for i in range(4)]


def test_the_default_follows_where_chroma_runs() -> None:
    """2 turns beside embedded Chroma; none when its query is a wait on a Chroma server."""

    def turns(**values: object) -> int:
        return Settings(_env_file=None, **values).knowledge_search_turns  # type: ignore[call-arg]

    assert turns() == 2
    assert turns(chroma_url="http://127.0.0.1:8000") == 0
    assert turns(chroma_url="http://127.0.0.1:8000", knowledge_search_concurrency=3) == 3
    assert turns(knowledge_search_concurrency=0) == 0


def test_turns_serve_several_event_loops() -> None:
    """An app's services may outlive a loop (tests, embedded runners): each loop gets its own."""
    turns = CpuTurns(1)
    for _ in range(2):
        _, most = asyncio.run(_holders(turns, 3))
        assert most == 1
