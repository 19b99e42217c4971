"""Stream a graph's LLM tokens from a task we own, so a departed client can stop it.

Closing ``graph.astream(...)`` early does not stop LangGraph's running node: the model
call goes on to its end (and is paid for). Iterating in a task of our own and cancelling
that task does stop it, down to the provider's HTTP stream. One pump for every streaming
entry point (chat threads, RAG...): they differ only in the ``stream_mode`` they ask for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig

MessageChunk = tuple[BaseMessage, dict[str, Any]]
_END = object()


class TokenPump:
    """The ``stream_mode`` items of one graph run, through a queue.

    ``"messages"`` (the default) yields ``(message chunk, metadata)``; a list of modes
    yields ``(mode, payload)`` pairs.
    """

    def __init__(
        self,
        graph: Runnable,
        inputs: Any,
        config: RunnableConfig,
        *,
        stream_mode: str | Sequence[str] = "messages",
    ) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        mode = stream_mode if isinstance(stream_mode, str) else list(stream_mode)
        self._task = asyncio.create_task(self._run(graph, inputs, config, mode))

    async def _run(
        self, graph: Runnable, inputs: Any, config: RunnableConfig, mode: str | list[str]
    ) -> None:
        try:
            async for item in graph.astream(inputs, config, stream_mode=mode):
                await self._queue.put(item)
        except Exception as exc:  # handed to the consumer, raised there
            await self._queue.put(exc)
        finally:
            await self._queue.put(_END)

    async def next(self) -> Any:
        """The next item, ``None`` at the end; a failure of the run is raised here."""
        item = await self._queue.get()
        if item is _END:
            return None
        if isinstance(item, Exception):
            raise item
        return item

    async def cancel(self) -> None:
        """Stop the run (and its provider call) and wait until it has stopped."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
