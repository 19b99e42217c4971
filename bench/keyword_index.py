"""The BM25 keyword index (``knowledge.keyword_index``): ingest throughput, search latency.

Fills a fresh index with synthetic ~1000-character chunks (Korean and English words drawn
from a fixed, seeded vocabulary with Zipf frequencies, Korean words often with particles)
and times ``index_chunks`` (tokenize + insert + commit, 500 chunks per transaction, no
embedding) and ``search`` for 3-term queries: "zipf" queries draw their words as often as
the text does (so they hit the very common terms), "uniform" ones draw any vocabulary word.

Wall-clock numbers on a shared machine include waiting for a core, so the table also gives
CPU time: this process's, plus on PostgreSQL that of our database's backends (from
/proc); "load avg" is the 1-minute load when the row finished. Search CPU is a mean, so
the few queries made only of very common terms weigh on it.

Also: the keyword index's bytes per chunk (its tables and indexes: SQLite's ``dbstat``,
PostgreSQL's ``pg_total_relation_size``), zipf queries from 10 concurrent clients ("c10"),
zipf queries again once the first ones have run ("steady state": the common terms are in
memory), and zipf queries each right after a one-chunk write to the collection ("after a
write": the search first catches up with the write log).

SQLite runs in a temporary directory; ``--pg URL`` also runs on PostgreSQL in a scratch
database of its own (created next to URL's database and dropped afterwards). ``--keep DIR``
keeps the filled indexes (SQLite files in DIR, PostgreSQL databases named after the size)
and reuses them on the next run, so a 100k-chunk index is built once. Tables are created by
the service's migrations. Usage::

    uv run python bench/keyword_index.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import Settings
from db.driver_sql import DriverReads
from db.migrate import upgrade
from db.session import create_engine, create_sessionmaker
from knowledge import keyword_index
from knowledge.keywords import STOPWORDS, terms

SEED = 20261202
CHUNK_CHARS = 1000
BATCH = 500
SYLLABLES = (
    "가나다라마바사아자차카타파하고노도로모보소오조초코토포호구누두루무부수우주추쿠투푸후"
    "기니디리미비시이지치키티피히개내대래매배새애재채캐태패해거너더러머버서어저처커터퍼허"
    "관광국금길남동문민병보산상서선성세수시신안연영용원유은인일장전정제조중지진창천청한현화회"
)
PARTICLES = ("은", "는", "이", "가", "을", "를", "에", "에서", "으로", "의", "와", "도", "하고")


@dataclass
class Vocabulary:
    """The fixed word lists and their Zipf weights."""

    words: list[str]
    weights: list[float]
    korean: set[str]


def vocabulary(rng: random.Random, size: int = 4000) -> Vocabulary:
    english: set[str] = set()
    while len(english) < size // 2:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
        if word not in STOPWORDS:
            english.add(word)
    korean: set[str] = set()
    while len(korean) < size // 2:
        korean.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))))
    words = sorted(english) + sorted(korean)
    rng.shuffle(words)  # rank (hence frequency) independent of language
    return Vocabulary(words, [1.0 / (rank + 1) for rank in range(len(words))], korean)


def chunk_text(rng: random.Random, vocab: Vocabulary) -> str:
    parts: list[str] = []
    length = 0
    for word in rng.choices(vocab.words, vocab.weights, k=400):
        if word in vocab.korean and rng.random() < 0.6:
            word += rng.choice(PARTICLES)
        if rng.random() < 0.08:
            word += "."
        parts.append(word)
        length += len(word) + 1
        if length >= CHUNK_CHARS:
            break
    return " ".join(parts)[:CHUNK_CHARS]


def queries(rng: random.Random, vocab: Vocabulary, count: int, *, zipf: bool) -> list[str]:
    weights = vocab.weights if zipf else None
    picked: list[str] = []
    while len(picked) < count:
        words = rng.choices(vocab.words, weights, k=3)
        if len(set(words)) == 3 and len(terms(" ".join(words))) == 3:
            picked.append(" ".join(words))
    return picked


def percentile(values: list[float], q: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, int(q * len(data)))] * 1000


@dataclass
class Result:
    """One backend at one size."""

    backend: str
    chunks: int
    postings: int
    bytes_per_chunk: float
    index_rate: float | None
    index_cpu_rate: float | None
    tokenize_rate: float
    zipf: list[float]
    uniform: list[float]
    again: list[float]
    concurrent: list[float]
    after_write: list[float]
    cpu_ms: dict[str, float]
    load: float
    notes: list[str]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_probe(admin: psycopg.Connection | None, database: str = "") -> Callable[[], float]:
    """CPU seconds used so far by this process and, on PostgreSQL, our database's backends.

    Wall-clock latency on a shared machine includes waiting for a core; CPU time does not.
    """
    if admin is None:
        return time.process_time
    connection = admin

    def probe() -> float:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = %s AND backend_type = 'client backend'",
            (database,),
        ).fetchall()
        total = time.process_time()
        for (pid,) in rows:
            try:
                total += cpu_seconds(pid)
            except OSError:  # a backend that just exited
                pass
        return total

    return probe


async def index_bytes(conn: AsyncConnection, backend: str) -> int:
    """Bytes of the keyword index's tables and their indexes."""
    if backend == "postgresql":
        query = (
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            " AND c.relname LIKE 'ahc_keyword%'"
        )
    else:
        query = (
            "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name LIKE 'ahc_keyword%'"
            " OR name IN (SELECT name FROM sqlite_master WHERE tbl_name LIKE 'ahc_keyword%')"
        )
    return int((await conn.execute(text(query))).scalar_one())


async def timed_searches(
    sessions: async_sessionmaker[AsyncSession], collection: str, asked: list[str], clients: int
) -> list[float]:
    """Each query's latency, ``clients`` at a time."""
    latencies: list[float] = []
    pending = list(reversed(asked))

    async def client() -> None:
        while pending:
            q = pending.pop()
            began = time.perf_counter()
            async with sessions() as session:
                reads = await DriverReads.on(await session.connection())
                await keyword_index.search(reads, collection, q, limit=10)
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


async def run(
    settings: Settings,
    backend: str,
    size: int,
    query_count: int,
    cpu: Callable[[], float],
    warm: int = 0,
) -> Result:
    upgrade(settings)
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    rng = random.Random(SEED)
    vocab = vocabulary(rng)
    collection = str(uuid.UUID(int=SEED + size))  # the same in a kept index
    indexing = tokenizing = index_cpu = 0.0
    if hasattr(keyword_index, "CACHE"):  # (not before revision 0011: for comparisons)
        keyword_index.CACHE.clear()
    try:
        async with sessions() as session:  # open the pooled connection before measuring
            have = int(
                (
                    await session.execute(
                        text(
                            "SELECT COALESCE(MAX(df), 0) FROM ahc_keyword_terms"
                            " WHERE collection_id = :c AND term = '#chunks'"
                        ),
                        {"c": collection},
                    )
                ).scalar_one()
            )
        built = have < size
        for start in range(have, size, BATCH):
            texts = [chunk_text(rng, vocab) for _ in range(min(BATCH, size - start))]
            batch = [(f"doc-{start // BATCH:05d}:{i:04d}", t) for i, t in enumerate(texts)]
            began = time.process_time()
            for t in texts:
                terms(t)
            tokenizing += time.process_time() - began
            began, used = time.perf_counter(), cpu()
            async with sessions() as session:
                await keyword_index.index_chunks(session, collection, batch)
                await session.commit()
            indexing += time.perf_counter() - began
            index_cpu += cpu() - used
        if not built:
            texts = [chunk_text(rng, vocab) for _ in range(BATCH)]
            began = time.process_time()
            for t in texts:
                terms(t)
            tokenizing = (time.process_time() - began) * size / BATCH
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            postings = int(
                (
                    await conn.execute(
                        text(
                            "SELECT COALESCE(SUM(df), 0) FROM ahc_keyword_terms"
                            " WHERE collection_id = :c AND term NOT LIKE '#%'"
                        ),
                        {"c": collection},
                    )
                ).scalar_one()
            )
            if built:  # what autovacuum does after a bulk load (PostgreSQL: the visibility map)
                await conn.execute(text("VACUUM ANALYZE" if backend == "postgresql" else "ANALYZE"))
            stored = await index_bytes(conn, backend)
            breakdown = await storage_breakdown(conn, backend)
        warmed = ""
        if warm:
            rss = resident_mb()
            began, used = time.perf_counter(), cpu()
            read = await keyword_index.warm(sessions, collection, budget=warm)
            warmed = (
                f"warm({warm:,}): {read:,} postings in {time.perf_counter() - began:.2f} s"
                f" ({cpu() - used:.2f} CPU-s), RSS +{resident_mb() - rss:.0f} MB"
            )
        asker = random.Random(SEED + 1)
        latencies: dict[str, list[float]] = {}
        cpu_ms: dict[str, float] = {}
        for kind in ("zipf", "uniform"):
            asked = queries(asker, vocab, query_count, zipf=kind == "zipf")
            for q in asked[:5]:  # warm the connection pool
                async with sessions() as session:
                    reads = await DriverReads.on(await session.connection())
                await keyword_index.search(reads, collection, q, limit=10)
            used = cpu()
            latencies[kind] = await timed_searches(sessions, collection, asked, 1)
            cpu_ms[kind] = (cpu() - used) / len(asked) * 1000
        # Steady state: more queries of the same kind, now that common terms are in memory.
        latencies["again"] = await timed_searches(
            sessions, collection, queries(asker, vocab, query_count, zipf=True), 1
        )
        asked = queries(asker, vocab, query_count, zipf=True)
        latencies["c10"] = await timed_searches(sessions, collection, asked, 10)
        after: list[float] = []
        for i, q in enumerate(queries(asker, vocab, max(10, query_count // 10), zipf=True)):
            chunk_id = f"bench-write-{i}"
            async with sessions() as session:
                await keyword_index.index_chunks(
                    session, collection, [(chunk_id, chunk_text(asker, vocab))]
                )
                await session.commit()
            after.extend(await timed_searches(sessions, collection, [q], 1))
            async with sessions() as session:
                await keyword_index.remove_chunks(session, [chunk_id])
                await session.commit()
    finally:
        await engine.dispose()
    return Result(
        backend=backend,
        chunks=size,
        postings=postings,
        bytes_per_chunk=stored / size,
        index_rate=size / indexing if built and indexing else None,
        index_cpu_rate=size / index_cpu if built and index_cpu else None,
        tokenize_rate=size / tokenizing,
        zipf=latencies["zipf"],
        uniform=latencies["uniform"],
        again=latencies["again"],
        concurrent=latencies["c10"],
        after_write=after,
        cpu_ms=cpu_ms,
        load=os.getloadavg()[0],
        notes=[warmed, *breakdown] if warmed else breakdown,
    )


def resident_mb() -> float:
    """This process's resident set, MB (from /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def storage_breakdown(conn: AsyncConnection, backend: str) -> list[str]:
    """Bytes of each keyword table: heap, TOAST and indexes (PostgreSQL) or pages (SQLite)."""
    if backend == "postgresql":
        rows = await conn.execute(
            text(
                "SELECT c.relname, pg_relation_size(c.oid),"
                " COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0),"
                " pg_indexes_size(c.oid) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                " AND c.relname LIKE 'ahc_keyword%' ORDER BY c.relname"
            )
        )
        return [
            f"  {name}: table {heap:,} + TOAST {toast:,} + indexes {indexes:,} bytes"
            for name, heap, toast, indexes in rows.all()
        ]
    rows = await conn.execute(
        text(
            "SELECT name, SUM(pgsize) FROM dbstat WHERE name LIKE '%keyword%'"
            " GROUP BY name ORDER BY name"
        )
    )
    return [f"  {name}: {size:,} bytes" for name, size in rows.all()]


@contextmanager
def scratch_database(url: str, keep: str | None = None) -> Iterator[tuple[str, str, str]]:
    """A database of our own on URL's server; dropped (forcefully) at the end unless kept.

    Yields its SQLAlchemy URL, its name and a libpq URL of the server's admin database.
    """
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    name = keep or f"ahc_bench_kw_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False), name, admin
    finally:
        if keep is None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def rate(value: float | None) -> str:
    return "(kept)" if value is None else f"{value:,.0f}"


def p50_95(values: list[float]) -> str:
    return f"{percentile(values, 0.5):.1f} / {percentile(values, 0.95):.1f}"


def row(result: Result) -> str:
    return (
        f"| {result.backend} | {result.chunks:,} | {result.postings:,} "
        f"| {result.bytes_per_chunk:,.0f} "
        f"| {rate(result.index_rate)} | {rate(result.index_cpu_rate)} "
        f"| {result.tokenize_rate:,.0f} "
        f"| {p50_95(result.zipf)} | {p50_95(result.uniform)} | {p50_95(result.again)} "
        f"| {p50_95(result.concurrent)} "
        f"| {p50_95(result.after_write)} "
        f"| {result.cpu_ms['zipf']:.1f} / {result.cpu_ms['uniform']:.1f} | {result.load:.1f} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", help="a PostgreSQL URL (postgresql+psycopg://...)")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep", help="keep the filled indexes here and reuse them")
    parser.add_argument(
        "--warm",
        type=int,
        default=0,
        help="before searching, warm this many postings of the most frequent terms",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        "| backend | chunks | postings | index bytes/chunk | index chunks/s "
        "| index chunks/CPU-s | terms() chunks/CPU-s | search ms p50 / p95 (zipf) "
        "| search ms p50 / p95 (uniform) | zipf again (steady state) p50 / p95 "
        "| zipf, 10 clients, p50 / p95 "
        "| zipf after a write p50 / p95 | search CPU ms/query (zipf / uniform) | load avg |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        if not args.no_sqlite:
            with contextlib.ExitStack() as stack:
                if args.keep:
                    data = Path(args.keep) / f"sqlite-{size}"
                    data.mkdir(parents=True, exist_ok=True)
                else:
                    data = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                settings = Settings(_env_file=None, data_dir=data)
                result = await run(
                    settings, "sqlite", size, args.queries, cpu_probe(None), args.warm
                )
                print(row(result), *result.notes, sep="\n", flush=True)
        if args.pg:
            tag = (
                "".join(c if c.isalnum() else "_" for c in Path(args.keep).name)
                if args.keep
                else ""
            )
            keep = f"ahc_bench_kw_keep_{tag}_{size}" if args.keep else None
            with (
                scratch_database(args.pg, keep) as (url, name, admin),
                tempfile.TemporaryDirectory() as d,
            ):
                settings = Settings(_env_file=None, data_dir=Path(d), database_url=url)
                with psycopg.connect(admin, autocommit=True) as conn:
                    probe = cpu_probe(conn, name)
                    result = await run(settings, "postgresql", size, args.queries, probe, args.warm)
                print(row(result), *result.notes, sep="\n", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
