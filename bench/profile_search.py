"""Where the service's CPU goes under concurrent searches of the kept 100k collection.

Runs the service (one uvicorn worker pinned to core 0, the fake OpenAI embedder on core
1) on the data a ``bench/rag.py --keep DIR`` run left, drives ``--clients`` concurrent
searches of one mode for ``--seconds``, and prints latency and service CPU per search.
With ``--spy FILE`` it also samples the worker with py-spy (``pip install py-spy``; not a
dependency of the service) and prints the share of busy samples per part of the search
path (bench/results/search-cpu-2026-12-05c.txt was made with it):

    .venv/bin/python bench/profile_search.py --keep /var/tmp/ahc-rag-100k --mode hybrid \
        [--clients 10] [--seconds 20] [--pg postgresql+psycopg://...] [--spy /tmp/hybrid.txt]

py-spy slows the worker down several times: read its latencies as meaningless and its
shares as the profile.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import cpu_seconds, service
from bench.rag import (
    BATCH_SIZE,
    FAKE_MODEL,
    SEED,
    Client,
    Corpus,
    concurrent_searches,
    fake_embedder,
    kept_database,
    pct,
    scratch_database,
)

PARTS = [
    ("keyword: statistics", "read_stats"),
    ("keyword: postings", "postings_for"),
    ("keyword: numbers -> ids", "_names ("),
    ("keyword: BM25 scoring", "scoring.py"),
    ("keyword: rest", "_keyword_leg"),
    ("chunk texts + documents", "ready_chunks"),
    ("relevance gate", "_relevant"),
    ("vector: query embedding", "aembed_query"),
    ("vector: Chroma", "chromadb"),
    ("vector: rest", "_vector_leg"),
    ("fusion and hits", "_ranked"),
    ("search: rest", "Search."),
    ("HTTP, middleware, routing, JSON", "run_asgi"),
    ("SQLAlchemy (greenlets)", "sqlalchemy"),
    ("accounting", "UsageRecorder"),
    ("other threads", "Thread.run"),
    ("event loop", "Runner.run"),
]
IDLE = ("aiosqlite/core.py:59)", "concurrent/futures/thread.py:81)")
"""Worker threads waiting for work (py-spy counts them as busy)."""


def parts(raw: Path) -> list[tuple[str, float]]:
    """Share of the busy samples per part of the search path (first match wins)."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack.rsplit(";", 1)[-1].endswith(IDLE):
            continue
        name = next((name for name, mark in PARTS if mark in stack), "other")
        counts[name] += int(n)
    total = sum(counts.values()) or 1
    return [(name, 100 * counts[name] / total) for name, _ in [*PARTS, ("other", "")]]


async def drive(args: argparse.Namespace, database_url: str | None) -> None:
    data = Path(args.keep) / ("postgresql" if database_url else "sqlite")
    env = {
        "AHC_DATA_DIR": str(data / "service"),
        "AHC_EMBEDDING_MODEL": FAKE_MODEL,
        "AHC_EMBEDDING_BATCH_SIZE": str(BATCH_SIZE),
        "AHC_LOCAL_EMBEDDING_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    if database_url:
        env["AHC_DATABASE_URL"] = database_url
    queries = Corpus(random.Random(SEED)).queries(100)
    with fake_embedder(core=1) as fake, service(fake.url, core=0, env=env) as svc:
        connector = aiohttp.TCPConnector(limit=args.clients + 2, keepalive_timeout=3)
        async with aiohttp.ClientSession(connector=connector) as session:
            client = Client(svc.url, svc.pid, fake, session)
            for query in queries[:30]:  # warm-up
                await client.search(query, 4, args.mode)
            spy = None
            if args.spy:
                spy = await asyncio.create_subprocess_exec(
                    *("py-spy", "record", "-p", str(svc.pid), "-r", "400", "-f", "raw"),
                    *("-o", args.spy, "-d", str(int(args.seconds) + 2)),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                await asyncio.sleep(1.5)  # attached
            used, began = cpu_seconds(svc.pid), time.perf_counter()
            latencies: list[float] = []
            while time.perf_counter() - began < args.seconds:
                latencies += await concurrent_searches(
                    client, list(queries), 4, args.mode, args.clients
                )
            cpu_ms = (cpu_seconds(svc.pid) - used) / len(latencies) * 1000
            if spy is not None:
                await spy.wait()
    print("| mode | clients | searches | p50 ms | p95 ms | service CPU ms/search |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| {args.mode} | {args.clients} | {len(latencies)} | {pct(latencies, 0.5):.1f} | "
        f"{pct(latencies, 0.95):.1f} | {cpu_ms:.2f} |"
    )
    if args.spy:
        print("\n| part of the search path | share of busy samples |\n|---|---:|")
        for name, share in parts(Path(args.spy)):
            print(f"| {name} | {share:.1f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", required=True, help="the directory bench/rag.py --keep filled")
    parser.add_argument("--mode", default="hybrid", choices=["hybrid", "keyword", "vector"])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--pg", help="the PostgreSQL server bench/rag.py --pg used")
    parser.add_argument("--spy", help="sample with py-spy into this file (raw format)")
    args = parser.parse_args()
    if args.pg:
        with scratch_database(args.pg, kept_database(args.keep)) as url:
            asyncio.run(drive(args, url))
    else:
        asyncio.run(drive(args, None))


if __name__ == "__main__":
    main()
