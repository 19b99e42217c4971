"""OpenAI: a lean query path, one bare aiohttp POST instead of the SDK's call.

A search embeds one short query per request, and there the SDK is the largest piece of the
request's CPU: ``OpenAIEmbeddings.aembed_query`` costs ~1.6-1.8 ms of CPU (the openai SDK's
request transform, its httpx-style request build and pydantic response models) where one
bare aiohttp POST and a base64 decode cost ~0.3 ms (bench/results/vecpath-2026-12-05b.txt).
So :class:`LeanQueryOpenAIEmbeddings` sends a query as that one POST, to the same URL with
the same key and organization as its SDK client, and reports usage the same way; any
failure (a non-200 answer, a connection error, a timeout, a body it cannot read) falls back
to the SDK's call, which keeps its retries and its errors. Passages (ingestion, batches)
always go through the SDK.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
import orjson
from aiohttp.helpers import get_env_proxy_for_url
from langchain_openai import OpenAIEmbeddings
from pydantic import PrivateAttr
from yarl import URL

from providers.embeddings.usage import _note_usage, _tally


class LeanQueryOpenAIEmbeddings(OpenAIEmbeddings):
    """``OpenAIEmbeddings`` whose async single-query embedding is one bare aiohttp POST.

    Everything else (passages, sync calls, retries after a failed lean attempt) is
    LangChain's. The session comes from the registry (one per event loop).
    """

    _session: Callable[[], aiohttp.ClientSession] | None = PrivateAttr(default=None)
    _proxy: Callable[[str], tuple[str | None, aiohttp.BasicAuth | None]] | None = PrivateAttr(
        default=None
    )
    _timeout: aiohttp.ClientTimeout = PrivateAttr(default_factory=aiohttp.ClientTimeout)

    async def aembed_query(self, text: str, **kwargs: Any) -> list[float]:
        """Embed a search query: the lean POST, else (on any failure) the SDK's call."""
        if self._session is not None and not kwargs and not self.model_kwargs:
            vector = await self._lean_query(self._session(), text)
            if vector is not None:
                return vector
        return await super().aembed_query(text, **kwargs)

    async def _lean_query(self, session: aiohttp.ClientSession, text: str) -> list[float] | None:
        """The query's vector (usage noted in the tally), or None to let the SDK do it."""
        client = self.async_client._client  # the SDK's: its resolved URL, key, organization
        headers = {"Authorization": f"Bearer {client.api_key}", "Content-Type": "application/json"}
        if client.organization:
            headers["OpenAI-Organization"] = client.organization
        payload: dict[str, Any] = {
            "input": [text],
            "model": self.model,
            "encoding_format": "base64",
        }
        if self.dimensions is not None:
            payload["dimensions"] = self.dimensions
        url = f"{str(client.base_url).rstrip('/')}/embeddings"
        proxy, proxy_auth = self._proxy(url) if self._proxy is not None else (None, None)
        try:
            async with session.post(
                url,
                data=orjson.dumps(payload),
                headers=headers,
                timeout=self._timeout,
                proxy=proxy,
                proxy_auth=proxy_auth,
            ) as response:
                if response.status != 200:
                    return None
                body = await response.read()
            embedding = orjson.loads(body)["data"][0]["embedding"]
            if isinstance(embedding, str):
                vector: list[float] = np.frombuffer(
                    base64.b64decode(embedding), dtype="<f4"
                ).tolist()
            else:
                vector = [float(x) for x in embedding]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, IndexError, TypeError):
            return None
        if not vector:
            return None
        tally = _tally.get()
        if tally is not None:
            _note_usage(tally, body)
        return vector


class _Sessions:
    """The lean query path's aiohttp sessions: one per event loop, closed by ``aclose``."""

    def __init__(self) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._proxies: dict[str, tuple[str | None, aiohttp.BasicAuth | None]] = {}

    def get(self) -> aiohttp.ClientSession:
        """The running loop's session (made on first use)."""
        loop = asyncio.get_running_loop()
        session = self._by_loop.get(loop)
        if session is None or session.closed:
            for other in [o for o in self._by_loop if o.is_closed()]:
                del self._by_loop[other]  # its loop is gone, and its sockets with it
            session = self._by_loop[loop] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
                auto_decompress=True,
            )
        return session

    def proxy(self, url: str) -> tuple[str | None, aiohttp.BasicAuth | None]:
        """The environment's proxy for ``url`` (HTTPS_PROXY, NO_PROXY...), as the SDK uses.

        Looked up once per base URL: aiohttp's ``trust_env`` reads the environment on every
        request (~0.6 ms of CPU, as much as the rest of the lean call).
        """
        found = self._proxies.get(url)
        if found is None:
            try:
                proxy, auth = get_env_proxy_for_url(URL(url))
                found = (str(proxy), auth)
            except LookupError:
                found = (None, None)
            self._proxies[url] = found
        return found

    async def aclose(self) -> None:
        """Close the running loop's session (the others' loops have closed theirs)."""
        sessions, self._by_loop = self._by_loop, {}
        loop = asyncio.get_running_loop()
        for owner, session in sessions.items():
            if owner is loop:
                await session.close()
