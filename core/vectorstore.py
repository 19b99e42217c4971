"""The Chroma client: embedded (persistent, in the data directory) or a Chroma server.

Built lazily in a worker thread on first use (``chromadb`` takes ~1.5 s to import), and
shared for the app's lifetime. The knowledge base builds its LangChain ``Chroma`` stores
on this client.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlparse

from core.config import Settings


class ChromaClientProvider:
    """Holds the one Chroma client of the process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Any = None
        self._building: asyncio.Task[Any] | None = None

    def _build(self) -> Any:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        if self._settings.chroma_url:
            url = urlparse(self._settings.chroma_url)
            return chromadb.HttpClient(
                host=url.hostname or "127.0.0.1",
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
        path = self._settings.data_dir / "chroma"
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)

    @property
    def ready(self) -> bool:
        """Whether the client is built (a readiness probe must not wait for the import)."""
        return self._client is not None

    def start(self) -> asyncio.Task[Any]:
        """Start building the client in a worker thread, once; the build in flight.

        A failed build is started again by the next call. The build runs as a task of its
        own, so a caller that stops waiting (a probe's timeout) does not throw it away.
        """
        task = self._building
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._building = asyncio.ensure_future(asyncio.to_thread(self._build))
            task.add_done_callback(self._built)
        return task

    def _built(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._client = task.result()

    async def get(self) -> Any:
        """The client, built on first call."""
        if self._client is not None:
            return self._client
        return await asyncio.shield(self.start())

    async def heartbeat(self) -> None:
        """Raise if the vector store cannot be reached."""
        client = await self.get()
        await asyncio.to_thread(client.heartbeat)
