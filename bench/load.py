"""A mixed workload against one and two instances, then a soak that watches memory.

The production set-up in small: PostgreSQL (a scratch database), Redis (a scratch key
prefix), the fake OpenAI upstream, and one or two uvicorn instances (each pinned to its own
core) that share them, with the client spreading requests round-robin. Each request is drawn
from a fixed, seeded mix: chat plain 40%, chat streamed 30%, knowledge search 10%, RAG query
10%, usage report 10%. For each number of instances and each concurrency the table gives
throughput, p50/p95/p99 and errors; the soak then runs the mix at one concurrency for
``--soak-seconds`` and samples every process's RSS, printing the first, last and highest
values and the least-squares slope (MB per minute: a leak shows as a steady positive slope).

On 2 cores, the instances, the fake upstream and this load generator share the machine:
the scaling factor from one to two instances is bounded by that, not by the service.

    uv run python bench/load.py [--concurrency 1,8,32] [--seconds 20] [--soak-seconds 600]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import Service, fake_upstream, scratch_database, service, token

MIX = (("chat", 40), ("stream", 30), ("search", 10), ("rag", 10), ("usage", 10))
DOCUMENT = "\n\n".join(
    f"Policy {i}. Laptops are replaced every {i + 2} years; the VPN client is GlobalProtect. "
    + "Expenses need a receipt within thirty days. " * 10
    for i in range(6)
)


@dataclass
class Tally:
    """Latencies (s) and errors of one step, per kind of request."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def p(self, q: float) -> float:
        """The ``q`` quantile of the latencies, in ms."""
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000 if data else float("nan")


def request_for(kind: str, i: int) -> tuple[str, str, dict | None]:
    """Method, path and body of one request of ``kind``."""
    question = {"role": "user", "content": f"Question {i}: how often are laptops replaced?"}
    if kind == "chat":
        return "POST", "/api/chat/completions", {"model": "gpt-4o-mini", "messages": [question]}
    if kind == "stream":
        body = {"model": "gpt-4o-mini", "messages": [question], "stream": True}
        return "POST", "/api/chat/completions", body
    if kind == "search":
        return "POST", "/api/knowledge/search", {"query": "VPN client", "k": 5}
    if kind == "rag":
        return "POST", "/api/knowledge/query", {"question": "Which VPN client do we use?"}
    return "GET", "/api/usage", None


async def drive(urls: list[str], concurrency: int, seconds: float, seed: int) -> Tally:
    """Run the mix with ``concurrency`` workers for ``seconds``, round-robin over ``urls``."""
    tally = Tally()
    rng = random.Random(seed)
    kinds = [k for k, w in MIX for _ in range(w)]
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token(org='load-org', user='load')}"}
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            while time.monotonic() < deadline:
                i = next(counter)
                kind = rng.choice(kinds)
                method, path, body = request_for(kind, i)
                started = time.perf_counter()
                try:
                    async with session.request(method, urls[i % len(urls)] + path, json=body) as r:
                        await r.read()
                        ok = r.status == 200
                except aiohttp.ClientError:
                    ok = False
                if not ok:
                    tally.errors += 1
                    continue
                tally.latencies.append(time.perf_counter() - started)
                tally.kinds[kind] = tally.kinds.get(kind, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB), in MB per minute."""
    if len(samples) < 2:
        return float("nan")
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(m for _, m in samples) / n
    var = sum((t - mx) ** 2 for t, _ in samples)
    return 60 * sum((t - mx) * (m - my) for t, m in samples) / var if var else float("nan")


def seed_knowledge(url: str) -> None:
    """One document, ingested inline, so search and RAG have something to find."""
    auth = {"Authorization": f"Bearer {token(org='load-org', user='load')}"}
    files = [("files", ("policy.txt", DOCUMENT.encode(), "text/plain"))]
    response = httpx.post(f"{url}/api/knowledge/documents", headers=auth, files=files, timeout=120)
    response.raise_for_status()
    doc = response.json()["documents"][0]
    deadline = time.monotonic() + 120
    while doc["status"] == "processing" and time.monotonic() < deadline:
        time.sleep(0.5)
        doc = httpx.get(f"{url}/api/knowledge/documents/{doc['id']}", headers=auth).json()
    if doc["status"] != "ready":
        raise RuntimeError(f"the seed document did not ingest: {doc}")


async def soak(instances: list[Service], concurrency: int, seconds: float) -> list[str]:
    """The mix for ``seconds`` while sampling each instance's RSS every ~5 s."""
    samples: dict[int, list[tuple[float, float]]] = {s.pid: [] for s in instances}
    began = time.monotonic()

    async def sample() -> None:
        while time.monotonic() - began < seconds:
            for svc in instances:
                samples[svc.pid].append((time.monotonic() - began, rss_mb(svc.pid)))
            await asyncio.sleep(5)

    urls = [s.url for s in instances]
    tally, _ = await asyncio.gather(drive(urls, concurrency, seconds, seed=99), sample())
    rows = [
        f"soak: {seconds:.0f} s at concurrency {concurrency}, {len(tally.latencies)} requests, "
        f"{tally.errors} errors, p95 {tally.p(0.95):.1f} ms",
        "| instance | RSS first MB | RSS last MB | RSS max MB | slope MB/min |",
        "|---|---|---|---|---|",
    ]
    for n, svc in enumerate(instances, start=1):
        points = samples[svc.pid]
        mbs = [m for _, m in points]
        # Skip the first minute: caches and pools fill then, which is not a leak.
        steady = [(t, m) for t, m in points if t >= 60] or points
        rows.append(
            f"| {n} | {mbs[0]:.0f} | {mbs[-1]:.0f} | {max(mbs):.0f} | "
            f"{slope_per_minute(steady):+.2f} |"
        )
    return rows


async def main(args: argparse.Namespace) -> None:
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    table = [
        "| instances | concurrency | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    throughput: dict[tuple[int, int], float] = {}
    soak_rows: list[str] = []
    with (
        scratch_database("ahc_load") as database,
        fake_upstream(core=1) as upstream,
        ExitStack() as stack,
    ):
        env = {
            "AHC_DATABASE_URL": database,
            "AHC_REDIS_URL": "redis://127.0.0.1:6379/0",
            "AHC_REDIS_PREFIX": f"ahc-load-{uuid.uuid4().hex[:6]}:",
            "AHC_EMBEDDING_MODEL": "text-embedding-3-small",
            "AHC_KNOWLEDGE_INLINE_MAX_BYTES": str(1 << 20),
        }
        first = stack.enter_context(service(upstream, core=0, env=env))
        seed_knowledge(first.url)
        second = stack.enter_context(service(upstream, core=1, env=env))
        for count, instances in ((1, [first]), (2, [first, second])):
            urls = [s.url for s in instances]
            await drive(urls, 4, min(5.0, args.seconds), seed=0)  # warm-up
            for c in concurrencies:
                tally = await drive(urls, c, args.seconds, seed=c)
                rps = len(tally.latencies) / args.seconds
                throughput[(count, c)] = rps
                table.append(
                    f"| {count} | {c} | {rps:.0f} | {tally.p(0.5):.1f} | {tally.p(0.95):.1f} | "
                    f"{tally.p(0.99):.1f} | {tally.errors} |"
                )
        if args.soak_seconds > 0:
            soak_rows = await soak([first, second], concurrencies[-1], args.soak_seconds)
    print("\n".join(table))
    top = concurrencies[-1]
    print(
        f"\nscaling 1 → 2 instances at concurrency {top}: "
        f"{throughput[(2, top)] / throughput[(1, top)]:.2f}×"
    )
    if soak_rows:
        print("\n" + "\n".join(soak_rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=20.0, help="per step")
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    asyncio.run(main(parser.parse_args()))
