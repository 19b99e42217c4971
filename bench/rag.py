"""The knowledge base's own cost: ingestion throughput and search latency against raw Chroma.

One uvicorn worker (the real service, over HTTP) is pinned to core 0; the fake OpenAI server
(``tests/fakes/openai_server.py``, configured as the OpenAI upstream) and this process share
core 1. Synthetic documents (Korean and English words with Zipf frequencies, paragraphs of
600-950 characters, so one paragraph = one chunk at the default 1000/150 chunking) are
uploaded through ``POST /api/knowledge/documents``.

Ingestion (chunks/s from the first upload to the last document ``ready``, and CPU per chunk):

- with the local embedders (``local-use``, optionally ``local-e5``: collections created with
  that model), a few hundred chunks; the embedder's share is the time the same texts take
  to embed alone (``providers.embeddings``, in a process pinned to core 0) over the
  ingestion's wall time;
- with the "instant" embedder: ``text-embedding-3-small`` served by the fake (hashed bag of
  words, 1536 dimensions, ~0.1 ms of its CPU per chunk, reported so it can be subtracted).
  The service then does everything but the embedding: HTTP, parsing, splitting, the OpenAI
  client, Chroma's HNSW insert, the SQL registry and BM25 postings, accounting.

Search (concurrency 1, ``k`` results, client-side p50/p95; hybrid and keyword also from 10
concurrent clients, rows "×10") at each ``--chunks`` size of the
fake-embedded collection, ``mode`` vector, hybrid and keyword. The baselines, in the same run
and interleaved query by query with the service's, query a copy of the service's Chroma
directory (made once ingestion is idle, so no two processes write one directory) opened with
``chromadb.PersistentClient`` in this process, with ``n_results=k`` and the same ``include``
as the service. "chromadb direct" (the target's baseline) is what a program using chromadb
runs for ``query(query_texts=[q])``: chromadb's ``OpenAIEmbeddingFunction`` (the openai SDK)
against the same fake, then the query; it runs on the service's core (this process moves
there for each raw call), so it reaches the fake across cores as the service does. Chroma's
query alone and the query embedded by one bare aiohttp call are shown too. The small
``local-use`` collection gets the same comparison with the same local engine embedding the
query in this process (the default set-up).

    .venv/bin/python bench/rag.py [--chunks 10000,100000] [--queries 200] [--k 4]
        [--local-docs 20] [--local-engines use[,e5]] [--e5-docs 5] [--doc-chunks 1000]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test] [--no-sqlite] [--quick]
        [--workers 1,2] [--keep DIR]

``--workers 1,2`` then restarts the service on the same data as ``ai-helper-core serve
--workers 2`` on both cores (the bench client and the fake share core 1 with it) and repeats
the search rows (CPU summed over the worker processes). Each worker opens the embedded Chroma
directory on its own: right for these read-only rows, not for a deployment that writes
(two workers need a Chroma server, ``AHC_CHROMA_URL``).

``--pg`` also runs the whole measurement with PostgreSQL as the registry, in a scratch
database created next to the URL's and dropped afterwards.

``--keep DIR`` keeps what ingestion built and reuses it on the next run with the same DIR:
the service's data directory (SQLite file, Chroma directory, keys) in ``DIR/sqlite`` and
``DIR/postgresql``, and on PostgreSQL the database ``ahc_bench_rag_keep_<DIR's name>``
(never dropped: ``DROP DATABASE`` it by hand). A run fills the fake-embedded collection
only up to each ``--chunks`` size from what it already holds (a kept 100k collection costs
no ingestion), and draws the same queries as a fresh run (the skipped documents are still
generated, to advance the seeded generator). Use it with ``--local-docs 0``. The ingestion
rows of a kept run cover only what it added.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import ROOT, cpu_seconds, service, token, tree_cpu_seconds

SEED = 20261203
SEARCH_ADDED_MS = 2.0  # the service adds at most this over chromadb direct (vector, p50)
P95_MS = {"hybrid": 30.0, "keyword": 20.0}  # at 100k chunks, concurrency 1
CONCURRENT = 10  # clients of the concurrent rows; their p95 may be at most 3x the above
EMBEDDER_SHARE = 0.80  # ingestion is bound by the embedder: it takes at least this share
FAKE_MODEL = "text-embedding-3-small"
COLLECTION = "default"  # the fake-embedded collection (AHC_EMBEDDING_MODEL = FAKE_MODEL)
BATCH_SIZE = 64
UPLOAD_ATTEMPTS = 5
IN_FLIGHT = 3  # big documents processing at once: the 2 ingestion workers never wait
LOCAL_THREADS = 1
SYLLABLES = (
    "가나다라마바사아자차카타파하고노도로모보소오조초코토포호구누두루무부수우주추쿠투푸후"
    "기니디리미비시이지치키티피히개내대래매배새애재채캐태패해거너더러머버서어저처커터퍼허"
)
PARTICLES = ("은", "는", "이", "가", "을", "를", "에", "에서", "으로", "의", "와", "도")


# --- synthetic text -------------------------------------------------------------------


@dataclass
class Corpus:
    """A seeded vocabulary with Zipf weights; paragraphs and queries drawn from it."""

    rng: random.Random
    words: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    korean: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        english: set[str] = set()
        while len(english) < 2000:
            letters = self.rng.choices("abcdefghijklmnopqrstuvwxyz", k=self.rng.randint(3, 9))
            english.add("".join(letters))
        while len(self.korean) < 2000:
            self.korean.add("".join(self.rng.choice(SYLLABLES) for _ in range(2)))
        self.words = sorted(english) + sorted(self.korean)
        self.rng.shuffle(self.words)
        self.weights = [1.0 / (rank + 1) for rank in range(len(self.words))]

    def paragraph(self) -> str:
        """600-950 characters: alone in its chunk (two never fit in 1000)."""
        target = self.rng.randint(600, 950)
        parts: list[str] = []
        length = 0
        for word in self.rng.choices(self.words, self.weights, k=400):
            if word in self.korean and self.rng.random() < 0.6:
                word += self.rng.choice(PARTICLES)
            if self.rng.random() < 0.08:
                word += "."
            if length + len(word) + 1 > target:
                break
            parts.append(word)
            length += len(word) + 1
        return " ".join(parts)

    def document(self, chunks: int) -> list[str]:
        """The paragraphs of a document of ``chunks`` chunks."""
        return [self.paragraph() for _ in range(chunks)]

    def queries(self, count: int) -> list[str]:
        """Three distinct words each, drawn as often as the text uses them."""
        found: list[str] = []
        while len(found) < count:
            words = self.rng.choices(self.words, self.weights, k=3)
            if len(set(words)) == 3:
                found.append(" ".join(words))
        return found


# --- processes ------------------------------------------------------------------------


@dataclass
class Fake:
    """The running fake OpenAI server."""

    url: str
    pid: int


@contextmanager
def fake_embedder(core: int = 1) -> Iterator[Fake]:
    """The fake OpenAI server pinned to ``core`` (its pid, to read its CPU time)."""
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            str(core),
            sys.executable,
            "-m",
            "tests.fakes.openai_server",
            "--port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.match(r"READY (\S+)", line)
        if not match:
            raise RuntimeError(f"fake upstream did not start: {line!r}")
        yield Fake(match.group(1), proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def kept_database(keep: str) -> str:
    """The PostgreSQL database name that ``--keep DIR`` keeps its data in."""
    tag = "".join(c if c.isalnum() else "_" for c in Path(keep).resolve().name)
    return f"ahc_bench_rag_keep_{tag}"


@contextmanager
def scratch_database(url: str, keep: str | None = None) -> Iterator[str]:
    """A PostgreSQL database of our own on URL's server; dropped (forcefully) at the end.

    ``keep``: the database's name; created if missing, reused and never dropped.
    """
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    name = keep or f"ahc_bench_rag_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


STANDALONE = """
import json, sys, time
from providers.embeddings import E5Embeddings, UseEmbeddings
kind, path, threads, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
texts = json.load(open(path))
embedder = {"local-use": UseEmbeddings, "local-e5": E5Embeddings}[kind](
    threads=threads, batch_size=batch
)
embedder.embed_documents(texts[:batch])  # load the weights, warm up
wall, cpu = time.perf_counter(), time.process_time()
embedder.embed_documents(texts)
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))
"""


def embed_alone(model: str, texts: list[str], core: int = 0) -> tuple[float, float]:
    """Wall and CPU seconds ``model`` takes to embed ``texts`` alone, pinned to ``core``."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(texts, handle)
    try:
        out = subprocess.run(
            [
                "taskset",
                "-c",
                str(core),
                sys.executable,
                "-c",
                STANDALONE,
                model,
                handle.name,
                str(LOCAL_THREADS),
                str(BATCH_SIZE),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OPENBLAS_NUM_THREADS": str(LOCAL_THREADS)},
        )
    finally:
        os.unlink(handle.name)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["wall"]), float(result["cpu"])


# --- measurements ---------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return float("nan")
    return data[min(len(data) - 1, int(q * len(data)))] * 1000


@dataclass
class Ingest:
    """One ingestion measurement."""

    embedder: str
    label: str
    docs: int
    chunks: int
    wall: float
    service_cpu: float
    embedder_cpu: float
    embedder_wall: float | None = None  # local: the same texts embedded alone
    upload_errors: int = 0  # 5xx answers to uploads (retried)

    @property
    def rate(self) -> float:
        """Chunks per second of wall time."""
        return self.chunks / self.wall

    @property
    def share(self) -> float:
        """Share of the ingestion's CPU time spent embedding (local: in the service's)."""
        if self.embedder_wall is not None:
            return self.embedder_cpu / self.service_cpu
        return self.embedder_cpu / (self.embedder_cpu + self.service_cpu)

    @property
    def wall_share(self) -> float:
        """Share of the ingestion's wall time the embedding takes (alone, or the fake's CPU)."""
        busy = self.embedder_wall if self.embedder_wall is not None else self.embedder_cpu
        return busy / self.wall


@dataclass
class Search:
    """Latencies (seconds) of one search mode at one collection size."""

    size: int
    mode: str
    service: list[float]
    cpu_ms: float
    raw_query: list[float] = field(default_factory=list)
    raw_embed_query: list[float] = field(default_factory=list)  # aiohttp → fake, then query
    raw_chromadb: list[float] = field(default_factory=list)  # chromadb's OpenAI EF, then query
    same_topk: float | None = None
    fake_cpu_ms: float | None = None
    hits: float = 0.0


@dataclass
class Floor:
    """The pieces of a vector search, measured apart: p50 latencies and this process's CPU."""

    size: int
    parts: dict[str, tuple[list[float], float | None]]  # name → latencies s, CPU ms/call
    raw_open_s: float
    copy_s: float
    upsert: tuple[int, float, float]  # chunks, wall s, CPU s of raw Chroma upserts


async def timed(n: int, call: Any) -> tuple[list[float], float]:
    """Latencies of ``n`` awaited calls and this process's CPU (all threads) per call, ms."""
    latencies = []
    cpu = time.process_time()
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        latencies.append(time.perf_counter() - started)
    return latencies, (time.process_time() - cpu) / n * 1000


class Client:
    """The bench's HTTP side: uploads, polling, searches (aiohttp, keep-alive)."""

    def __init__(self, url: str, pid: int, fake: Fake, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.pid = pid
        self.fake = fake
        self.session = session
        self.headers: dict[str, str] = {}
        self.upload_errors = 0
        self.refresh()

    def refresh(self) -> None:
        """A fresh token (they last two hours; one is kept so the service caches it)."""
        self.headers = {"Authorization": f"Bearer {token()}"}

    async def create_collection(self, name: str, model: str) -> None:
        """A collection embedded with ``model`` (kept when it exists)."""
        async with self.session.post(
            f"{self.url}/api/knowledge/collections",
            json={"name": name, "embedding_model": model},
            headers=self.headers,
        ) as response:
            if response.status not in (201, 409):
                raise RuntimeError(f"collection {name}: {response.status} {await response.text()}")

    async def upload(self, collection: str, name: str, text: str) -> dict[str, Any]:
        """Upload one text file; the document as the service answers it."""
        for attempt in range(UPLOAD_ATTEMPTS):
            form = aiohttp.FormData()
            form.add_field("collection", collection)
            form.add_field("files", text.encode(), filename=name, content_type="text/plain")
            async with self.session.post(
                f"{self.url}/api/knowledge/documents", data=form, headers=self.headers
            ) as response:
                body = await response.json()
            if response.status >= 500 and attempt + 1 < UPLOAD_ATTEMPTS:
                # Counted and retried (SQLite: "database is locked" behind ingestion commits).
                self.upload_errors += 1
                log(f"upload {name}: {response.status}, retrying")
                await asyncio.sleep(1)
                continue
            if response.status != 201 or body.get("errors"):
                raise RuntimeError(f"upload {name}: {response.status} {body}")
            return dict(body["documents"][0])
        raise AssertionError("unreachable")

    async def count(self, collection: str, status: str) -> int:
        """How many documents of ``collection`` are in ``status``."""
        async with self.session.get(
            f"{self.url}/api/knowledge/documents",
            params={"collection": collection, "status": status, "limit": "1"},
            headers=self.headers,
        ) as response:
            return int((await response.json())["count"])

    async def wait_below(self, collection: str, limit: int) -> None:
        """Poll until fewer than ``limit`` documents of ``collection`` are processing."""
        while True:
            if await self.count(collection, "processing") < limit:
                return
            await asyncio.sleep(0.25)

    async def wait_ready(self, collection: str) -> None:
        """Poll until no document of ``collection`` is processing (raise if one failed)."""
        while True:
            if not await self.count(collection, "processing"):
                break
            await asyncio.sleep(0.25)
        failed = await self.count(collection, "failed")
        if failed:
            raise RuntimeError(f"{failed} documents failed to ingest")

    async def chunks(self, collection: str) -> int:
        """The chunks of every document of ``collection``."""
        total, offset = 0, 0
        while True:
            async with self.session.get(
                f"{self.url}/api/knowledge/documents",
                params={"collection": collection, "limit": "200", "offset": str(offset)},
                headers=self.headers,
            ) as response:
                body = await response.json()
            total += sum(int(d["chunks"]) for d in body["data"])
            offset += len(body["data"])
            if offset >= body["count"] or not body["data"]:
                return total

    async def search(
        self, query: str, k: int, mode: str, collection: str = COLLECTION
    ) -> tuple[float, list[str]]:
        """One search through the service: its latency and the chunk ids found."""
        started = time.perf_counter()
        async with self.session.post(
            f"{self.url}/api/knowledge/search",
            json={"query": query, "k": k, "mode": mode, "collection": collection},
            headers=self.headers,
        ) as response:
            body = await response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"search: {response.status} {body[:300]!r}")
        return elapsed, [r["chunk_id"] for r in json.loads(body)["results"]]

    async def get(self, path: str, *, auth: bool) -> float:
        """The latency of one GET."""
        started = time.perf_counter()
        async with self.session.get(
            f"{self.url}{path}", headers=self.headers if auth else None
        ) as response:
            await response.read()
        return time.perf_counter() - started

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """The fake's vectors, fetched the way the OpenAI SDK does (base64 float32)."""
        async with self.session.post(
            f"{self.fake.url}/embeddings",
            json={"model": FAKE_MODEL, "input": texts, "encoding_format": "base64"},
            headers={"Authorization": "Bearer sk-bench"},
        ) as response:
            body = await response.json()
        return [
            np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4").tolist()
            for item in body["data"]
        ]


async def ingest_local(
    client: Client, corpus: Corpus, model: str, docs: int, per_doc: int
) -> Ingest:
    name = f"bench-{model}"
    await client.create_collection(name, model)
    await client.upload(name, "warm-up.txt", "\n\n".join(corpus.document(4)))  # loads weights
    documents = [corpus.document(per_doc) for _ in range(docs)]
    texts = [p for d in documents for p in d]
    errors = client.upload_errors
    before = cpu_seconds(client.pid)
    began = time.perf_counter()
    chunks = 0
    for i, paragraphs in enumerate(documents):
        document = await client.upload(name, f"local-{i:04d}.txt", "\n\n".join(paragraphs))
        if document["status"] != "ready":
            await client.wait_ready(name)
        chunks += int(document["chunks"]) or per_doc
    await client.wait_ready(name)
    wall = time.perf_counter() - began
    service_cpu = cpu_seconds(client.pid) - before
    errors = client.upload_errors - errors
    alone_wall, alone_cpu = embed_alone(model, texts)
    return Ingest(
        model, "small collection", docs, chunks, wall, service_cpu, alone_cpu, alone_wall, errors
    )


async def ingest_fake(
    client: Client, corpus: Corpus, have: int, target: int, per_doc: int
) -> Ingest:
    """Upload big documents until the collection holds ``target`` chunks."""
    sizes = []
    remaining = target - have
    while remaining > 0:
        sizes.append(min(per_doc, remaining))
        remaining -= sizes[-1]
    documents = ["\n\n".join(corpus.document(n)) for n in sizes]  # generated before timing
    client.refresh()
    pid = client.pid
    errors = client.upload_errors
    before, fake_before = cpu_seconds(pid), cpu_seconds(client.fake.pid)
    began = time.perf_counter()
    for i, text in enumerate(documents):
        await client.wait_below(COLLECTION, IN_FLIGHT)
        await client.upload(COLLECTION, f"big-{have + i:07d}.txt", text)
    await client.wait_ready(COLLECTION)
    wall = time.perf_counter() - began
    service_cpu = cpu_seconds(pid) - before
    fake_cpu = cpu_seconds(client.fake.pid) - fake_before
    chunks = await client.chunks(COLLECTION) - have
    if chunks != target - have:
        print(f"note: expected {target - have} chunks, the service made {chunks}", flush=True)
    label = f"{have:,} → {have + chunks:,}"
    return Ingest(
        "fake (instant)",
        label,
        len(documents),
        chunks,
        wall,
        service_cpu,
        fake_cpu,
        upload_errors=client.upload_errors - errors,
    )


def open_raw(
    data: Path, size: int | str, probe: str, vector: list[float]
) -> tuple[Any, Any, Path, float, float]:
    """Copy the service's Chroma directory and open the collection that holds ``probe``."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    began = time.perf_counter()
    copy = data.parent / f"raw-chroma-{size}"
    shutil.rmtree(copy, ignore_errors=True)  # a kept run's leftover (killed before cleanup)
    shutil.copytree(data / "chroma", copy, ignore=shutil.ignore_patterns("*-shm"))
    copied = time.perf_counter() - began
    began = time.perf_counter()
    client = chromadb.PersistentClient(
        path=str(copy), settings=ChromaSettings(anonymized_telemetry=False)
    )
    for candidate in client.list_collections():
        collection = client.get_collection(candidate.name)
        if collection.get(ids=[probe], include=[])["ids"]:
            collection.query(query_embeddings=[vector], n_results=1)  # loads the index
            return client, collection, copy, copied, time.perf_counter() - began
    raise RuntimeError("no Chroma collection holds the service's chunks")


INCLUDE = ["documents", "metadatas", "distances"]  # what langchain-chroma asks for


def pin_process(core: int) -> None:
    """Move every thread of this process (Chroma's own included) to ``core``."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), {core})


async def search_phase(
    client: Client, corpus: Corpus, data: Path, size: int, n: int, k: int
) -> tuple[list[Search], Floor]:
    client.refresh()
    pid = client.pid
    queries = corpus.queries(n)
    vectors = await client.embed(queries)
    _, probe = await client.search(queries[0], k, "vector")
    raw_client, raw, copy, copy_s, open_s = open_raw(data, size, probe[0], vectors[0])
    # What a program calling chromadb directly runs for ``query(query_texts=...)``: its
    # OpenAI embedding function (the openai SDK), then the query.
    from chromadb.utils.embedding_functions import OpenAIEmbeddingFunction

    embedding_function = OpenAIEmbeddingFunction(
        api_key="sk-bench", api_base=client.fake.url, model_name=FAKE_MODEL
    )

    def query(vector: list[float]) -> tuple[float, list[str]]:
        started = time.perf_counter()
        result = raw.query(query_embeddings=[vector], n_results=k, include=INCLUDE)
        return time.perf_counter() - started, list(result["ids"][0])

    async def embed_query(text: str) -> float:
        started = time.perf_counter()
        vector = (await client.embed([text]))[0]
        raw.query(query_embeddings=[vector], n_results=k, include=INCLUDE)
        return time.perf_counter() - started

    def chromadb_query(text: str) -> float:
        started = time.perf_counter()
        embedded = embedding_function([text])
        raw.query(query_embeddings=embedded, n_results=k, include=INCLUDE)
        return time.perf_counter() - started

    # The raw side runs on the service's core (idle between its requests; this process
    # moves there before each raw call and back after it), so it reaches the fake across
    # cores as the service does, and the service's client stays apart from the service.
    def on_service_core(call: Any) -> Any:
        pin_process(0)
        try:
            return call()
        finally:
            pin_process(1)

    try:
        for q, v in zip(queries[:20], vectors[:20], strict=True):  # warm-up, every side
            await client.search(q, k, "vector")
            on_service_core(lambda v=v: query(v))
            await embed_query(q)
            on_service_core(lambda q=q: chromadb_query(q))
        svc: list[float] = []
        raw_q: list[float] = []
        raw_eq: list[float] = []
        raw_db: list[float] = []
        same = 0
        hits = 0
        before, fake_before = cpu_seconds(pid), cpu_seconds(client.fake.pid)
        for i, (q, v) in enumerate(zip(queries, vectors, strict=True)):
            # Interleaved, in a rotating order: load from elsewhere hits every side alike.
            for step in range(4):
                which = (i + step) % 4
                if which == 0:
                    elapsed, ids = await client.search(q, k, "vector")
                    svc.append(elapsed)
                    hits += len(ids)
                elif which == 1:
                    elapsed, raw_ids = on_service_core(lambda v=v: query(v))
                    raw_q.append(elapsed)
                elif which == 2:
                    raw_eq.append(await embed_query(q))  # the aiohttp floor: stays on core 1
                else:
                    raw_db.append(on_service_core(lambda q=q: chromadb_query(q)))
            same += ids == raw_ids
        cpu_ms = (cpu_seconds(pid) - before) / n * 1000
        fake_ms = (cpu_seconds(client.fake.pid) - fake_before) / (3 * n) * 1000
        rows = [
            Search(size, "vector", svc, cpu_ms, raw_q, raw_eq, raw_db, same / n, fake_ms, hits / n),
        ]
        for mode in ("hybrid", "keyword"):
            for q in queries[:20]:
                await client.search(q, k, mode)
            before = cpu_seconds(pid)
            latencies = []
            hits = 0
            for q in queries:
                elapsed, ids = await client.search(q, k, mode)
                latencies.append(elapsed)
                hits += len(ids)
            cpu_ms = (cpu_seconds(pid) - before) / n * 1000
            rows.append(Search(size, mode, latencies, cpu_ms, hits=hits / n))
        for mode in ("hybrid", "keyword"):  # CONCURRENT clients, the same queries
            before = cpu_seconds(pid)
            latencies = await concurrent_searches(client, queries, k, mode, CONCURRENT)
            cpu_ms = (cpu_seconds(pid) - before) / n * 1000
            rows.append(Search(size, f"{mode} ×{CONCURRENT}", latencies, cpu_ms))
        floor = await breakdown(client, corpus, raw_client, raw, queries, vectors, k)
        floor.size, floor.copy_s, floor.raw_open_s = size, copy_s, open_s
    finally:
        raw_client.clear_system_cache()
        shutil.rmtree(copy, ignore_errors=True)
    return rows, floor


async def workers_phase(
    client: Client, corpus: Corpus, size: int, n: int, k: int, workers: int
) -> list[Search]:
    """The same searches against ``workers`` worker processes (CPU: all of them)."""
    client.refresh()
    queries = corpus.queries(n)
    # Warm every worker (Chroma's client and index load on a process's first search).
    for mode in ("vector", "hybrid", "keyword"):
        await concurrent_searches(client, queries[: 20 * workers], k, mode, CONCURRENT)
    rows = []
    for mode in ("vector", "hybrid", "keyword"):
        before = tree_cpu_seconds(client.pid)
        latencies = [(await client.search(q, k, mode))[0] for q in queries]
        cpu_ms = (tree_cpu_seconds(client.pid) - before) / n * 1000
        rows.append(Search(size, f"{mode} ({workers} workers)", latencies, cpu_ms))
    for mode in ("hybrid", "keyword"):
        before = tree_cpu_seconds(client.pid)
        latencies = await concurrent_searches(client, queries, k, mode, CONCURRENT)
        cpu_ms = (tree_cpu_seconds(client.pid) - before) / n * 1000
        rows.append(Search(size, f"{mode} ×{CONCURRENT} ({workers} workers)", latencies, cpu_ms))
    return rows


async def concurrent_searches(
    client: Client, queries: list[str], k: int, mode: str, clients: int
) -> list[float]:
    """Each query's latency, ``clients`` searches at a time."""
    pending = list(reversed(queries))
    latencies: list[float] = []

    async def one_client() -> None:
        while pending:
            elapsed, _ = await client.search(pending.pop(), k, mode)
            latencies.append(elapsed)

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies


async def local_search_phase(
    client: Client, corpus: Corpus, data: Path, model: str, chunks: int, n: int, k: int
) -> Search:
    """Vector search in the default set-up (a local engine): service vs. chromadb directly.

    The raw side embeds the query with the same engine in this process (one thread, on the
    service's core), then queries a copy of the collection, as a program using chromadb
    with that model would.
    """
    from core.config import Settings
    from providers.embeddings import EmbeddingRegistry

    settings = Settings(_env_file=None, local_embedding_threads=LOCAL_THREADS)  # type: ignore[call-arg]
    engine = EmbeddingRegistry(settings).embeddings(model)
    name = f"bench-{model}"  # ingest_local's collection
    queries = corpus.queries(n)
    _, probe = await client.search(queries[0], k, "vector", name)
    pin_process(0)
    try:
        first = engine.embed_query(queries[0])
    finally:
        pin_process(1)
    raw_client, raw, copy, _, _ = open_raw(data, f"{model}-{chunks}", probe[0], first)

    def chromadb_query(text: str) -> tuple[float, float]:
        pin_process(0)
        try:
            started = time.perf_counter()
            vector = engine.embed_query(text)
            embedded = time.perf_counter()
            raw.query(query_embeddings=[vector], n_results=k, include=INCLUDE)
            done = time.perf_counter()
        finally:
            pin_process(1)
        return done - started, done - embedded

    try:
        for q in queries[:10]:  # warm-up, both sides
            await client.search(q, k, "vector", name)
            chromadb_query(q)
        svc: list[float] = []
        raw_db: list[float] = []
        raw_q: list[float] = []
        before = cpu_seconds(client.pid)
        for i, q in enumerate(queries):
            for step in range(2):
                if (i + step) % 2 == 0:
                    svc.append((await client.search(q, k, "vector", name))[0])
                else:
                    total, query_only = chromadb_query(q)
                    raw_db.append(total)
                    raw_q.append(query_only)
        cpu_ms = (cpu_seconds(client.pid) - before) / n * 1000
    finally:
        raw_client.clear_system_cache()
        shutil.rmtree(copy, ignore_errors=True)
    return Search(chunks, f"vector ({model})", svc, cpu_ms, raw_query=raw_q, raw_chromadb=raw_db)


async def breakdown(
    client: Client,
    corpus: Corpus,
    raw_client: Any,
    raw: Any,
    queries: list[str],
    vectors: list[list[float]],
    k: int,
) -> Floor:
    """Each piece of a vector search alone, then raw Chroma upserts of fresh chunks."""
    from langchain_chroma import Chroma

    from core.config import Settings
    from providers.embeddings import EmbeddingRegistry

    n = len(queries)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, OPENAI_API_KEY="sk-bench", OPENAI_BASE_URL=client.fake.url
    )
    registry = EmbeddingRegistry(settings)
    lean = registry.embeddings(FAKE_MODEL)  # the service's (AHC_LEAN_QUERY_EMBEDDINGS)
    sdk_registry = EmbeddingRegistry(settings.model_copy(update={"lean_query_embeddings": False}))
    sdk = sdk_registry.embeddings(FAKE_MODEL)
    store = Chroma(client=raw_client, collection_name=raw.name)

    async def in_thread(i: int) -> None:
        await asyncio.to_thread(
            store.similarity_search_by_vector_with_relevance_scores, vectors[i], k=k
        )

    async def raw_query(i: int) -> None:
        raw.query(query_embeddings=[vectors[i]], n_results=k, include=INCLUDE)

    calls: dict[str, Any] = {
        "GET /healthz": lambda i: client.get("/healthz", auth=False),
        "GET /api/models (auth, no SQL)": lambda i: client.get("/api/models", auth=True),
        "GET collections (auth + SQL)": lambda i: client.get(
            "/api/knowledge/collections", auth=True
        ),
        "embed: aiohttp → fake": lambda i: client.embed([queries[i]]),
        "embed: service's embedder (lean POST) → fake": lambda i: lean.aembed_query(queries[i]),
        "embed: openai SDK (OpenAIEmbeddings) → fake": lambda i: sdk.aembed_query(queries[i]),
        "raw Chroma query": raw_query,
        "langchain-chroma query in a thread": in_thread,
    }
    parts: dict[str, tuple[list[float], float | None]] = {}
    for name, call in calls.items():
        await timed(min(20, n), call)  # warm-up
        latencies, cpu = await timed(n, call)
        parts[name] = (latencies, None if name.startswith("GET") else cpu)
    await registry.aclose()
    await sdk_registry.aclose()
    # Raw upserts of fresh chunks (vectors fetched first), 64 per call like the service's.
    count = min(2000, max(n * 10, 500))
    texts = corpus.document(count)
    embedded: list[list[float]] = []
    for start in range(0, count, BATCH_SIZE):
        embedded.extend(await client.embed(texts[start : start + BATCH_SIZE]))
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, count, BATCH_SIZE):
        ids = [f"raw-{uuid.uuid4().hex}" for _ in texts[start : start + BATCH_SIZE]]
        raw.upsert(
            ids=ids,
            embeddings=embedded[start : start + BATCH_SIZE],
            documents=texts[start : start + BATCH_SIZE],
            metadatas=[
                {
                    "org_id": "bench-org",
                    "document_id": "raw",
                    "chunk_id": chunk_id,
                    "collection": COLLECTION,
                    "filename": "raw.txt",
                    "content_type": "text/plain",
                    "chunk_index": start + j,
                    "created_at": "2026-01-01T00:00:00+00:00",
                }
                for j, chunk_id in enumerate(ids)
            ],
        )
    upsert = (count, time.perf_counter() - wall, time.process_time() - cpu)
    return Floor(0, parts, 0.0, 0.0, upsert)


@dataclass
class Result:
    """Everything measured on one registry backend."""

    backend: str
    ingests: list[Ingest] = field(default_factory=list)
    searches: list[Search] = field(default_factory=list)
    floors: list[Floor] = field(default_factory=list)


async def measure(args: argparse.Namespace, backend: str, database_url: str | None) -> Result:
    result = Result(backend)
    corpus = Corpus(random.Random(SEED))
    if args.keep:
        data = Path(args.keep) / backend.lower()  # made by main()
    else:
        data = Path(tempfile.mkdtemp(prefix="ahc-bench-rag-"))
    env = {
        "AHC_DATA_DIR": str(data / "service"),
        "AHC_EMBEDDING_MODEL": FAKE_MODEL,
        "AHC_EMBEDDING_BATCH_SIZE": str(BATCH_SIZE),
        "AHC_LOCAL_EMBEDDING_THREADS": str(LOCAL_THREADS),
        "OPENBLAS_NUM_THREADS": str(LOCAL_THREADS),
    }
    if database_url:
        env["AHC_DATABASE_URL"] = database_url
    default_tmp, tempfile.tempdir = tempfile.tempdir, str(data)  # the harness's mkdtemp too
    pids: list[int] = []
    timeout = aiohttp.ClientTimeout(total=600)

    def connector() -> aiohttp.TCPConnector:
        # Idle connections closed before uvicorn drops them (its keep-alive: 5 s).
        return aiohttp.TCPConnector(limit=CONCURRENT + 2, keepalive_timeout=3)

    try:
        with fake_embedder(core=1) as fake, contextlib.ExitStack() as stack:
            svc = stack.enter_context(service(fake.url, core=0, env=env))
            pids.append(svc.pid)
            async with aiohttp.ClientSession(connector=connector(), timeout=timeout) as session:
                client = Client(svc.url, svc.pid, fake, session)
                for engine in args.local_engines:
                    docs = args.e5_docs if engine == "e5" else args.local_docs
                    if docs:
                        log(f"{backend}: ingesting with local-{engine}")
                        ingest = await ingest_local(
                            client, corpus, f"local-{engine}", docs, args.local_doc_chunks
                        )
                        result.ingests.append(ingest)
                        log(f"{backend}: searching local-{engine}")
                        result.searches.append(
                            await local_search_phase(
                                client,
                                corpus,
                                data / "service",
                                f"local-{engine}",
                                ingest.chunks,
                                min(args.queries, 100),
                                args.k,
                            )
                        )
                have = 0
                if args.keep:  # documents a killed run left processing: queued again at start
                    await client.wait_ready(COLLECTION)
                    have = await client.chunks(COLLECTION)
                if have:
                    log(f"{backend}: reusing {have:,} kept chunks")
                    skip_documents(corpus, have, args.doc_chunks)
                for size in args.chunks:
                    if size < have:
                        log(f"{backend}: {size:,} chunks: the kept collection is larger, skipped")
                        continue
                    if size > have:
                        log(f"{backend}: filling to {size:,} chunks")
                        ingest = await ingest_fake(client, corpus, have, size, args.doc_chunks)
                        result.ingests.append(ingest)
                        have += ingest.chunks
                    log(f"{backend}: searching {have:,} chunks")
                    searches, floor = await search_phase(
                        client, corpus, data / "service", have, args.queries, args.k
                    )
                    result.searches.extend(searches)
                    result.floors.append(floor)
            stack.close()  # the one-worker service stops; the same data, more workers:
            for workers in [w for w in args.workers if w > 1]:
                log(f"{backend}: searching {have:,} chunks with {workers} workers")
                try:
                    with service(fake.url, core="0,1", env=env, workers=workers) as svc:
                        pids.append(svc.pid)
                        async with aiohttp.ClientSession(
                            connector=connector(), timeout=timeout
                        ) as session:
                            client = Client(svc.url, svc.pid, fake, session)
                            result.searches.extend(
                                await workers_phase(
                                    client, corpus, have, args.queries, args.k, workers
                                )
                            )
                except Exception as exc:  # keep the rows measured so far
                    log(f"{backend}: {workers} workers failed: {exc!r}")
    except subprocess.TimeoutExpired as exc:  # the service took over 15 s to stop
        for pid in pids:  # not reaped yet, so still ours: stop it before removing its data
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(1)
        if isinstance(exc.__context__, Exception):
            raise exc.__context__ from None  # what went wrong before
        log("the service took over 15 s to stop: killed")
    finally:
        tempfile.tempdir = default_tmp
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    return result


def skip_documents(corpus: Corpus, chunks: int, per_doc: int) -> None:
    """Draw (and drop) the documents a kept collection already holds, as ingestion would.

    A kept run then generates the same later documents and queries as a fresh run.
    """
    while chunks > 0:
        corpus.document(min(per_doc, chunks))
        chunks -= per_doc


def log(message: str) -> None:
    load = os.getloadavg()[0]
    print(f"[{time.strftime('%H:%M:%S')}] {message} (load {load:.2f})", file=sys.stderr, flush=True)


# --- report ---------------------------------------------------------------------------


def table(columns: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def p50_95(values: list[float]) -> str:
    return f"{pct(values, 0.5):.2f} / {pct(values, 0.95):.2f}"


def report(result: Result, k: int) -> None:
    print(f"## {result.backend}\n")
    table(
        [
            "embedder",
            "collection",
            "docs",
            "chunks",
            "wall s",
            "chunks/s",
            "service CPU ms/chunk",
            "embedder CPU ms/chunk",
            "embedding share of CPU / of wall",
            "upload 5xx (retried)",
        ],
        [
            [
                i.embedder,
                i.label,
                str(i.docs),
                f"{i.chunks:,}",
                f"{i.wall:.1f}",
                f"{i.rate:,.1f}",
                f"{i.service_cpu / i.chunks * 1000:.2f}",
                f"{i.embedder_cpu / i.chunks * 1000:.2f}",
                f"{i.share:.0%} / {i.wall_share:.0%}",
                str(i.upload_errors),
            ]
            for i in result.ingests
        ],
    )
    rows = []
    for s in result.searches:
        if s.raw_chromadb:
            added = [pct(s.service, q) - pct(s.raw_chromadb, q) for q in (0.5, 0.95)]
            added_pct = added[0] / pct(s.raw_chromadb, 0.5) * 100
            floor = (
                (pct(s.service, 0.5) / pct(s.raw_embed_query, 0.5) - 1) * 100
                if s.raw_embed_query
                else None
            )
            rows.append(
                [
                    f"{s.size:,}",
                    s.mode,
                    p50_95(s.service),
                    p50_95(s.raw_chromadb),
                    f"{added[0]:+.2f} / {added[1]:+.2f}",
                    f"{added_pct:+.0f}%",
                    p50_95(s.raw_query),
                    p50_95(s.raw_embed_query) if s.raw_embed_query else "–",
                    f"{floor:+.0f}%" if floor is not None else "–",
                    f"{s.cpu_ms:.2f}",
                    f"{s.same_topk:.0%}" if s.same_topk is not None else "–",
                ]
            )
        else:
            rows.append(
                [f"{s.size:,}", s.mode, p50_95(s.service), *["–"] * 7, f"{s.cpu_ms:.2f}", "–"]
            )
    counts = sorted({len(s.service) for s in result.searches})
    print(f"Search, concurrency 1, k={k}, {' or '.join(map(str, counts))} queries per row:\n")
    table(
        [
            "chunks",
            "mode",
            "service p50/p95 ms",
            "chromadb direct (its OpenAI EF + query) p50/p95 ms",
            "added p50/p95 ms",
            "added p50 %",
            "Chroma query alone p50/p95 ms",
            "aiohttp embed + query p50/p95 ms",
            "added over that p50 %",
            "service CPU ms/req",
            "same top-k",
        ],
        rows,
    )
    print(
        "Where a vector search's time goes: each piece alone, p50 ms (CPU ms/call of the "
        "bench process, client side only), and raw Chroma upserts of fresh chunks (batches "
        f"of {BATCH_SIZE}, into the copy at that size):\n"
    )
    vector = {s.size: s for s in result.searches if s.mode == "vector"}
    names = list(result.floors[0].parts) if result.floors else []
    rows = []
    for f in result.floors:
        cells = [f"{f.size:,}"]
        for name in names:
            latencies, cpu = f.parts[name]
            cells.append(f"{pct(latencies, 0.5):.2f}" + (f" ({cpu:.2f})" if cpu else ""))
        v = vector[f.size]
        count, wall, cpu = f.upsert
        cells += [
            f"{pct(v.service, 0.5):.2f} ({v.cpu_ms:.2f} service)",
            f"{v.fake_cpu_ms or 0:.2f}",
            f"{count / wall:,.0f} / {cpu / count * 1000:.2f}",
            f"{f.copy_s:.1f} + {f.raw_open_s:.1f}",
        ]
        rows.append(cells)
    table(
        [
            "chunks",
            *names,
            "service vector search",
            "fake CPU ms/embedding",
            "raw upsert chunks/s / CPU ms/chunk",
            "copy + open raw s",
        ],
        rows,
    )
    print("Targets:")
    for s in result.searches:
        if not s.raw_chromadb:
            continue
        extra = pct(s.service, 0.5) - pct(s.raw_chromadb, 0.5)
        verdict = "PASS" if extra <= SEARCH_ADDED_MS else "FAIL"
        how = (
            "the query embedded by chromadb's OpenAI embedding function"
            if s.mode == "vector"
            else "the query embedded by the same local engine"
        )
        print(
            f"- {s.mode} search at {s.size:,} chunks: service adds {extra:+.2f} ms at p50 over "
            f"calling chromadb directly ({how}; ≤ {SEARCH_ADDED_MS:.0f} ms) → {verdict}"
        )
    for s in result.searches:
        mode, _, clients = s.mode.partition(" ×")
        if mode not in P95_MS:
            continue
        bar = P95_MS[mode] * (3 if clients else 1)
        p95 = pct(s.service, 0.95)
        print(
            f"- {s.mode} search at {s.size:,} chunks: p95 {p95:.1f} ms (≤ {bar:.0f} ms"
            f"{'' if s.size >= 100_000 else ', the bar of 100k chunks'}) "
            f"→ {'PASS' if p95 <= bar else 'FAIL'}"
        )
    fakes = [i for i in result.ingests if i.embedder.startswith("fake")]
    ceiling = sum(i.chunks for i in fakes) / sum(i.wall for i in fakes) if fakes else 0
    for i in result.ingests:
        if i.embedder_wall is None:
            continue
        verdict = "PASS" if i.share >= EMBEDDER_SHARE else "FAIL"
        print(
            f"- ingestion with {i.embedder} is bound by the embedder: embedding alone takes "
            f"{i.share:.0%} of the ingestion's CPU time (≥ {EMBEDDER_SHARE:.0%}; "
            f"{i.wall_share:.0%} of its wall time); "
            f"{i.rate:.1f} chunks/s vs. {ceiling:,.0f} chunks/s with an instant embedder "
            f"→ {verdict}"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )

    def ints(value: str) -> list[int]:
        return [int(x) for x in value.split(",") if x]

    parser.add_argument("--chunks", type=ints, default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--doc-chunks", type=int, default=1000, help="chunks per big document")
    parser.add_argument("--local-docs", type=int, default=20)
    parser.add_argument("--local-doc-chunks", type=int, default=16)
    parser.add_argument("--e5-docs", type=int, default=5, help="local-e5 is ~10x slower")
    parser.add_argument(
        "--local-engines", type=lambda s: [x for x in s.split(",") if x], default=["use"]
    )
    parser.add_argument("--pg", help="also on PostgreSQL (postgresql+psycopg://...)")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a smoke run (2000 chunks)")
    parser.add_argument(
        "--workers",
        type=ints,
        default=[1],
        help="also search the filled collection with N worker processes on both cores "
        "(`serve --workers N`; e.g. 1,2): its own rows, CPU summed over the workers",
    )
    parser.add_argument("--keep", help="keep the ingested data here and reuse it (see above)")
    args = parser.parse_args()
    if args.keep and args.local_docs:
        parser.error("--keep needs --local-docs 0 (the small collections would grow each run)")
    if args.keep:
        args.keep = str(Path(args.keep).resolve())
        for backend in ("sqlite", "postgresql"):
            (Path(args.keep) / backend).mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.chunks, args.queries, args.doc_chunks = [2000], 50, 500
        args.local_docs, args.e5_docs = min(args.local_docs, 4), min(args.e5_docs, 1)
    os.sched_setaffinity(0, {1})  # with the fake; the service has core 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (the data) on SIGTERM
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    if not args.no_sqlite:
        report(asyncio.run(measure(args, "SQLite", None)), args.k)
    if args.pg:
        keep = None
        if args.keep:
            keep = kept_database(args.keep)
        with scratch_database(args.pg, keep) as url:
            report(asyncio.run(measure(args, "PostgreSQL", url)), args.k)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
