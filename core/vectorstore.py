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
        self._lock = asyncio.Lock()

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

    async def get(self) -> Any:
        """The client, built on first call."""
        async with self._lock:
            if self._client is None:
                self._client = await asyncio.to_thread(self._build)
            return self._client

    async def heartbeat(self) -> None:
        """Raise if the vector store cannot be reached."""
        client = await self.get()
        await asyncio.to_thread(client.heartbeat)
