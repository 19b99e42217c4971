"""What the gateway adds to a chat completion: latency, time to first token, CPU.

Drives N requests at concurrency C straight at a fake OpenAI upstream, then through the
service (``/api/chat/completions``), plain, streaming (50-token streams) and a streamed
tool call of the same length (the tool's argument JSON in 50 fragments), and prints the
latency the service adds (p50/p95), time to first token (first text or argument
fragment), requests/s, and the service's CPU time per request. One uvicorn worker is
pinned to core 0; the fake upstream and this load generator share core 1.

    python bench/chat_overhead.py [--requests 2000] [--concurrency 1,10,50] [--quick]
        [--modes plain,stream,tools] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import Run, cpu_seconds, fake_upstream, load, service, token

TARGETS = {
    "cpu_plain_ms": 2.0,
    "cpu_stream_ms": 5.0,
    "added_p50_ms": 2.0,
    "added_ttft_ms": 2.0,
    "tools_vs_stream": 1.10,
}
MODES = ("plain", "stream", "tools")
TOOL = {
    "type": "function",
    "function": {
        "name": "note",
        "description": "Keep a note.",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    },
}


def body(mode: str, tokens: int) -> dict:
    """The request of a mode, answered in ``tokens`` chunks when streamed."""
    if mode == "tools":
        # The fake calls the tool with the quoted phrase as ``text``; its argument JSON
        # streams as '{"', 'text', '":"', one piece per word, '"}': tokens-4 words.
        words = " ".join(f"w{i}" for i in range(tokens - 4))
        return {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Note '{words}'"}],
            "tools": [TOOL],
            "stream": True,
        }
    # The fake echoes "echo: " + the message, one chunk per word: tokens-1 words → tokens chunks.
    words = " ".join(f"w{i}" for i in range(tokens - 1))
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": words}],
        "stream": mode == "stream",
    }


def chunks(url: str, payload: dict, headers: dict) -> int:
    """How many text or argument fragments one streamed answer has (the modes must match)."""
    with httpx.stream("POST", url, json=payload, headers=headers, timeout=30) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    count = 0
    for line in lines:
        for choice in json.loads(line[len("data: ") :]).get("choices") or []:
            delta = choice.get("delta") or {}
            count += bool(delta.get("content"))
            count += sum(
                bool((call.get("function") or {}).get("arguments"))
                for call in delta.get("tool_calls") or []
            )
    return count


async def phase(url: str, payload: dict, headers: dict, n: int, c: int, stream: bool) -> Run:
    await load(url, payload, headers, requests=min(200, n), concurrency=c, stream=stream)  # warm-up
    return await load(url, payload, headers, requests=n, concurrency=c, stream=stream)


async def measure(args: argparse.Namespace) -> list[dict]:
    """Per mode and concurrency: the direct run, the service's runs (pooled) and its CPU.

    The modes take turns within each of ``--rounds`` rounds and the CPU per request is the
    median of the rounds, so a busy neighbour on the machine weighs on every mode alike.
    """
    rows: dict[tuple[str, int], dict] = {}
    os.sched_setaffinity(0, {1})
    with fake_upstream(core=1) as upstream, service(upstream, core=0) as svc:
        auth = {"Authorization": f"Bearer {token()}"}
        lengths = {
            mode: chunks(f"{upstream}/chat/completions", body(mode, args.stream_tokens), auth)
            for mode in args.modes
            if mode != "plain"
        }
        if len(set(lengths.values())) > 1:
            raise SystemExit(f"the streams differ in length: {lengths}")
        for c in args.concurrency:
            for round_ in range(args.rounds):
                for mode in args.modes:
                    stream = mode != "plain"
                    payload = body(mode, args.stream_tokens)
                    n = args.requests if not stream else max(args.requests // 2, 100)
                    row = rows.get((mode, c))
                    if row is None:
                        direct = await phase(
                            f"{upstream}/chat/completions",
                            payload,
                            {"Authorization": "Bearer x"},
                            n,
                            c,
                            stream,
                        )
                        row = {"mode": mode, "c": c, "direct": direct, "via": Run(), "cpu": []}
                        rows[(mode, c)] = row
                    await load(  # warm-up: fully in the first round, briefly after a switch
                        f"{svc.url}/api/chat/completions",
                        payload,
                        auth,
                        requests=min(200 if round_ == 0 else 20, n),
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
                    done = max(len(via.latencies) + via.errors, 1)
                    row["cpu"].append((cpu_seconds(svc.pid) - before) / done * 1000)
                    pooled: Run = row["via"]
                    pooled.latencies += via.latencies
                    pooled.ttft += via.ttft
                    pooled.errors += via.errors
                    pooled.wall += via.wall
    ordered = sorted(rows.values(), key=lambda r: (MODES.index(r["mode"]), r["c"]))
    return [{**r, "cpu_ms": statistics.median(r["cpu"])} for r in ordered]


def report(rows: list[dict]) -> None:
    columns = [
        "mode",
        "conc",
        "direct p50/p95 ms",
        "service p50/p95 ms",
        "added p50/p95 ms",
        "TTFT direct/service/added ms",
        "req/s via service",
        "service CPU ms/req (median)",
        "errors",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        d, v = r["direct"], r["via"]
        ttft = "–"
        if r["mode"] != "plain":
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
    for r in (r for r in rows if r["mode"] == "tools"):
        same = [s for s in streams if s["c"] == r["c"]]
        if same:
            checks.append(
                (
                    f"tool-call stream CPU / plain stream CPU at concurrency {r['c']} ≤ 1.10",
                    r["cpu_ms"] / same[0]["cpu_ms"],
                    TARGETS["tools_vs_stream"],
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
    parser.add_argument(
        "--rounds", type=int, default=3, help="Turns of the modes (CPU: the median)."
    )
    parser.add_argument(
        "--modes",
        type=lambda s: [m for m in s.split(",") if m],
        default=list(MODES),
        help=f"Which of {', '.join(MODES)} to run (default: all).",
    )
    parser.add_argument("--quick", action="store_true", help="A smoke run (200 requests).")
    args = parser.parse_args()
    if args.quick:
        args.requests = 200
    report(asyncio.run(measure(args)))


if __name__ == "__main__":
    main()
