"""What the gateway adds to a chat completion: latency, time to first token, CPU.

Drives N requests at concurrency C straight at a fake OpenAI upstream, then through the
service (``/api/chat/completions``), plain and streaming (50-token streams), and prints
the latency the service adds (p50/p95), time to first token, requests/s, and the
service's CPU time per request. One uvicorn worker is pinned to core 0; the fake upstream
and this load generator share core 1.

    python bench/chat_overhead.py [--requests 2000] [--concurrency 1,10,50] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import Run, cpu_seconds, fake_upstream, load, service, token

TARGETS = {
    "cpu_plain_ms": 2.0,
    "cpu_stream_ms": 5.0,
    "added_p50_ms": 2.0,
    "added_ttft_ms": 2.0,
}


def body(stream: bool, tokens: int) -> dict:
    # The fake echoes "echo: " + the message, one chunk per word: tokens-1 words → tokens chunks.
    words = " ".join(f"w{i}" for i in range(tokens - 1))
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": words}],
        "stream": stream,
    }


async def phase(url: str, payload: dict, headers: dict, n: int, c: int, stream: bool) -> Run:
    await load(url, payload, headers, requests=min(200, n), concurrency=c, stream=stream)  # warm-up
    return await load(url, payload, headers, requests=n, concurrency=c, stream=stream)


async def measure(args: argparse.Namespace) -> list[dict]:
    rows = []
    os.sched_setaffinity(0, {1})
    with fake_upstream(core=1) as upstream, service(upstream, core=0) as svc:
        auth = {"Authorization": f"Bearer {token()}"}
        for stream in (False, True):
            payload = body(stream, args.stream_tokens)
            n = args.requests if not stream else max(args.requests // 2, 100)
            for c in args.concurrency:
                direct = await phase(
                    f"{upstream}/chat/completions",
                    payload,
                    {"Authorization": "Bearer x"},
                    n,
                    c,
                    stream,
                )
                await load(
                    f"{svc.url}/api/chat/completions",
                    payload,
                    auth,
                    requests=min(200, n),
                    concurrency=c,
                    stream=stream,
                )
                before = cpu_seconds(svc.pid)
                via = await load(
                    f"{svc.url}/api/chat/completions",
                    payload,
                    auth,
                    requests=n,
                    concurrency=c,
                    stream=stream,
                )
                cpu = (
                    (cpu_seconds(svc.pid) - before) / max(len(via.latencies) + via.errors, 1) * 1000
                )
                rows.append(
                    {
                        "mode": "stream" if stream else "plain",
                        "c": c,
                        "direct": direct,
                        "via": via,
                        "cpu_ms": cpu,
                    }
                )
    return rows


def report(rows: list[dict]) -> None:
    columns = [
        "mode",
        "conc",
        "direct p50/p95 ms",
        "service p50/p95 ms",
        "added p50/p95 ms",
        "TTFT direct/service/added ms",
        "req/s via service",
        "service CPU ms/req",
        "errors",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        d, v = r["direct"], r["via"]
        ttft = "–"
        if r["mode"] == "stream":
            td, tv = d.p(0.5, d.ttft), v.p(0.5, v.ttft)
            ttft = f"{td:.2f} / {tv:.2f} / {tv - td:+.2f}"
        cells = [
            r["mode"],
            str(r["c"]),
            f"{d.p(0.5):.2f} / {d.p(0.95):.2f}",
            f"{v.p(0.5):.2f} / {v.p(0.95):.2f}",
            f"{v.p(0.5) - d.p(0.5):+.2f} / {v.p(0.95) - d.p(0.95):+.2f}",
            ttft,
            f"{v.rps:.0f}",
            f"{r['cpu_ms']:.2f}",
            str(v.errors + d.errors),
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    print("Targets (one worker on one core, upstream on the other):")
    plain = [r for r in rows if r["mode"] == "plain"]
    streams = [r for r in rows if r["mode"] == "stream"]
    c1 = [r for r in rows if r["c"] == 1]
    checks = [
        (
            "service CPU per plain request ≤ 2 ms",
            max(r["cpu_ms"] for r in plain) if plain else 0,
            TARGETS["cpu_plain_ms"],
        ),
        (
            "service CPU per 50-token stream ≤ 5 ms",
            max(r["cpu_ms"] for r in streams) if streams else 0,
            TARGETS["cpu_stream_ms"],
        ),
    ]
    for r in c1:
        d, v = r["direct"], r["via"]
        checks.append(
            (
                f"added p50 at concurrency 1 ({r['mode']}) ≤ 2 ms",
                v.p(0.5) - d.p(0.5),
                TARGETS["added_p50_ms"],
            )
        )
        if r["mode"] == "stream":
            checks.append(
                (
                    "added TTFT at concurrency 1 ≤ 2 ms",
                    v.p(0.5, v.ttft) - d.p(0.5, d.ttft),
                    TARGETS["added_ttft_ms"],
                )
            )
    for name, value, limit in checks:
        print(f"- {name}: {value:.2f} → {'PASS' if value <= limit else 'FAIL'}")
    errors = sum(r["via"].errors for r in rows if r["c"] >= 50)
    print(f"- no error at concurrency 50: {errors} errors → {'PASS' if errors == 0 else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50]
    )
    parser.add_argument("--stream-tokens", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="A smoke run (200 requests).")
    args = parser.parse_args()
    if args.quick:
        args.requests = 200
    report(asyncio.run(measure(args)))


if __name__ == "__main__":
    main()
