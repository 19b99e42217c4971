"""What ``/api/responses`` costs on top of ``/api/chat/completions`` for the same answer.

The Responses API is a translation over the chat path (items → messages, the chat answer
or its SSE → a ``response`` object or typed events) plus, with ``store``, one insert per
response. This drives the same request through both routes, plain and as a 50-token
stream, ``store`` on and off, and prints the service's CPU per request and the p50
latency. One uvicorn worker is pinned to core 0; the fake upstream and this load generator
share core 1 (as ``bench/chat_overhead.py``).

    python bench/responses_overhead.py [--requests 1000] [--concurrency 10] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import Run, cpu_seconds, fake_upstream, load, service, token


def bodies(stream: bool, tokens: int) -> dict[str, tuple[str, dict]]:
    """Route label → (path, body) for the same question (the fake echoes it word by word)."""
    words = " ".join(f"w{i}" for i in range(tokens - 1))
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": words}]}
    responses = {"model": "gpt-4o-mini", "input": words}
    return {
        "chat.completions": ("/api/chat/completions", {**chat, "stream": stream}),
        "responses (store: false)": (
            "/api/responses",
            {**responses, "stream": stream, "store": False},
        ),
        "responses (store: true)": ("/api/responses", {**responses, "stream": stream}),
    }


async def measure(args: argparse.Namespace) -> list[dict]:
    """Rounds that alternate the routes (load on a shared machine drifts); medians of CPU."""
    rows = []
    os.sched_setaffinity(0, {1})
    with fake_upstream(core=1) as upstream, service(upstream, core=0) as svc:
        auth = {"Authorization": f"Bearer {token()}"}
        for stream in (False, True):
            n = args.requests if not stream else max(args.requests // 2, 100)
            routes = bodies(stream, args.stream_tokens)
            cpus: dict[str, list[float]] = {label: [] for label in routes}
            runs: dict[str, Run] = {}
            for _ in range(args.rounds):
                for label, (path, body) in routes.items():
                    url, c = f"{svc.url}{path}", args.concurrency
                    await load(url, body, auth, requests=min(100, n), concurrency=c, stream=stream)
                    before = cpu_seconds(svc.pid)
                    run = await load(url, body, auth, requests=n, concurrency=c, stream=stream)
                    done = max(len(run.latencies) + run.errors, 1)
                    cpus[label].append((cpu_seconds(svc.pid) - before) / done * 1000)
                    runs[label] = run
            for label in routes:
                rows.append(
                    {
                        "mode": "stream" if stream else "plain",
                        "route": label,
                        "run": runs[label],
                        "cpu": statistics.median(cpus[label]),
                    }
                )
    return rows


def report(rows: list[dict], concurrency: int) -> None:
    print(f"Concurrency {concurrency}; CPU: the median of the rounds; latency: the last round.")
    print("| mode | route | service CPU ms/req | added CPU vs chat | p50 ms | req/s | errors |")
    print("|---|---|---|---|---|---|---|")
    base: dict[str, float] = {}
    for r in rows:
        if r["route"] == "chat.completions":
            base[r["mode"]] = r["cpu"]
        added = r["cpu"] - base[r["mode"]]
        run = r["run"]
        share = added / base[r["mode"]] * 100
        print(
            f"| {r['mode']} | {r['route']} | {r['cpu']:.2f} | {added:+.2f} ({share:+.0f}%) "
            f"| {run.p(0.5):.2f} | {run.rps:.0f} | {run.errors} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--stream-tokens", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds (median).")
    parser.add_argument("--quick", action="store_true", help="A smoke run (200 requests).")
    args = parser.parse_args()
    if args.quick:
        args.requests = 200
    report(asyncio.run(measure(args)), args.concurrency)


if __name__ == "__main__":
    main()
