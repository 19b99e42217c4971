"""The runnables LangServe serves; runs of one thread, one at a time (``/runnables/chat``...).

:func:`served` wraps each runnable once: it shows the runnable's own config schema
(LangGraph's included: a plain binding would show only its ``config_specs``), applies the
server's config factories and, given ``locks_of``, serializes the runs of one thread.

The served graph reads the thread's checkpoint, calls the model and writes the checkpoint
back; two runs of one thread at the same time would lose a turn. Every run whose
``configurable.thread_id`` (the checkpoint key the server wrote) is set therefore holds the
thread's turn lock (``services.turn_locks``) for as long as it runs: ``/invoke``, each item
of ``/batch`` (items sharing a thread run one after the other), ``/stream``,
``/stream_log`` and ``/stream_events``. The lock is taken inside the run and released when
the run ends, fails or is cancelled (a client that hangs up cancels the stream's run).
A batch chains the items of one thread in their order (one conversation script).

Why here and not in a listener or in the config modifier: ``with_alisteners``' ``on_start``
is awaited before the run but its exceptions are swallowed (no 409, the run goes on), and a
lock taken per request in the modifier would not order the items of one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast

from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import get_config_list
from pydantic import BaseModel

from services.turn_locks import TurnLocks, hold_turn

LocksOf = Callable[[], TurnLocks]


# (The ignore: the pydantic mypy plugin trips over RunnableBinding's own `kwargs` field.)
class ServedRunnable(RunnableBinding[Any, Any]):  # type: ignore[no-redef]
    """The bound runnable, with its own schemas; run under its thread's turn lock if asked."""

    locks_of: Any = None
    """Returns the app's turn locks (built in the lifespan, after the routes); None: no lock."""

    def config_schema(self, *, include: Sequence[str] | None = None) -> type[BaseModel]:
        """The bound runnable's."""
        return self.bound.config_schema(include=include)

    def get_config_jsonschema(self, *, include: Sequence[str] | None = None) -> dict[str, Any]:
        """The bound runnable's."""
        return self.bound.get_config_jsonschema(include=include)

    def _key(self, config: RunnableConfig | None) -> str | None:
        """The run's thread (its checkpoint key, written by the server), if any."""
        key = (self._merge_configs(config).get("configurable") or {}).get("thread_id")
        return key if isinstance(key, str) else None

    @contextlib.asynccontextmanager
    async def _turn(self, config: RunnableConfig | None) -> AsyncIterator[None]:
        key = self._key(config)
        if key is None or self.locks_of is None:
            yield
            return
        async with hold_turn(self.locks_of(), key):
            yield

    async def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> Any:
        """One turn, under the thread's lock."""
        async with self._turn(config):
            return await super().ainvoke(input, config, **kwargs)

    async def abatch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any | None,
    ) -> list[Any]:
        """Each item through :meth:`ainvoke`; the items of one thread run in their order.

        Chained here rather than left to queue on the lock: a batch is one conversation
        script, and its own items must not use up each other's lock wait.
        """
        configs = get_config_list(config, len(inputs))
        gate = _Gate(configs[0].get("max_concurrency") if configs else None)
        results: list[Any] = [None] * len(inputs)
        chains: dict[object, list[int]] = {}
        for index, item_config in enumerate(configs):
            key = self._key(item_config)
            chains.setdefault(key if key is not None else index, []).append(index)

        async def run(chain: list[int]) -> None:
            for index in chain:
                async with gate:
                    try:
                        results[index] = await self.ainvoke(inputs[index], configs[index], **kwargs)
                    except Exception as exc:
                        if not return_exceptions:
                            raise
                        results[index] = exc

        await asyncio.gather(*(run(chain) for chain in chains.values()))
        return results

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> AsyncIterator[Any]:
        """The turn's chunks; the lock is held until the stream ends or is dropped."""
        async with self._turn(config):
            stream = cast(AsyncIterator[Any], super().astream(input, config, **kwargs))
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for chunk in stream:
                    yield chunk

    def astream_events(  # type: ignore[override]
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """The turn's events (v1/v2), under the thread's lock."""
        return self._events(input, config, **kwargs)

    async def _events(
        self, input: Any, config: RunnableConfig | None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async with self._turn(config):
            events = cast(AsyncIterator[Any], super().astream_events(input, config, **kwargs))
            async with contextlib.aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    yield event


class _Gate:
    """``max_concurrency`` of a batch (no bound when unset)."""

    def __init__(self, limit: int | None) -> None:
        self._semaphore = asyncio.Semaphore(limit) if limit else None

    async def __aenter__(self) -> None:
        if self._semaphore is not None:
            await self._semaphore.acquire()

    async def __aexit__(self, *_exc: object) -> None:
        if self._semaphore is not None:
            self._semaphore.release()


def served(
    runnable: Runnable,
    *,
    locks_of: LocksOf | None = None,
    config_factories: Sequence[Callable[[RunnableConfig], RunnableConfig]] = (),
) -> Runnable:
    """``runnable`` as LangServe serves it (``locks_of``: one run at a time per thread)."""
    return ServedRunnable(
        bound=runnable, locks_of=locks_of, config_factories=list(config_factories)
    )


def serialize_turns(runnable: Runnable, locks_of: LocksOf) -> Runnable:
    """``runnable`` with one run at a time per ``configurable.thread_id``."""
    return served(runnable, locks_of=locks_of)
