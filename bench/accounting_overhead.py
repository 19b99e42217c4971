"""What accounting, limits and the response cache cost per request.

Runs the chat overhead measurement (plain requests and 50-token streams, concurrency 1
and 10) against four set-ups of the service — accounting off; accounting on (SQLite, an org
without limits); accounting + limits on (SQLite, in-process counters); accounting + limits
on with PostgreSQL and Redis — and reports the p50 each adds over "off" (target: < 1 ms).
Then cache hits: p50/p95 latency of a repeated ``temperature: 0`` request, and the
service's CPU per hit.

    python bench/accounting_overhead.py [--requests 2000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from pathlib import Path

import httpx
import jwt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import (
    SECRET,
    Run,
    cpu_seconds,
    fake_upstream,
    load,
    scratch_database,
    service,
    token,
)
from bench.chat_overhead import body

LIMITS = {"requests_per_minute": 10**8, "tokens_per_day": 10**11, "cost_usd_per_month": 10**8}


def admin_token() -> str:
    claims = {"sub": "admin", "org_id": "bench-org", "role": "admin", "exp": 2**31}
    return jwt.encode(claims, SECRET, "HS256")


async def measure(
    url: str, pid: int, *, n: int, c: int, stream: bool, payload: dict
) -> tuple[Run, float]:
    auth = {"Authorization": f"Bearer {token()}"}
    target = f"{url}/api/chat/completions"
    await load(target, payload, auth, requests=min(200, n), concurrency=c, stream=stream)
    before = cpu_seconds(pid)
    run = await load(target, payload, auth, requests=n, concurrency=c, stream=stream)
    return run, (cpu_seconds(pid) - before) / max(len(run.latencies), 1) * 1000


async def main_async(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {1})
    setups: list[tuple[str, dict[str, str], bool]] = [
        ("off", {"AHC_ACCOUNTING_ENABLED": "false"}, False),
        ("accounting (SQLite)", {}, False),
        ("accounting + limits (SQLite, in-process)", {}, True),
    ]
    rows: list[tuple[str, str, int, Run, float]] = []
    hits: list[tuple[str, Run, float]] = []
    with fake_upstream(core=1) as upstream, scratch_database() as pg:
        setups.append(
            (
                "accounting + limits (PostgreSQL + Redis)",
                {
                    "AHC_DATABASE_URL": pg,
                    "AHC_REDIS_URL": "redis://127.0.0.1:6379/0",
                    "AHC_REDIS_PREFIX": f"ahc-bench-{uuid.uuid4().hex[:6]}:",
                },
                True,
            )
        )
        for name, env, limited in setups:
            with service(upstream, core=0, env=env) as svc:
                if limited:  # set up before any load: a blocking call is fine here
                    response = httpx.put(  # noqa: ASYNC210
                        f"{svc.url}/api/limits",
                        json=LIMITS,
                        headers={"Authorization": f"Bearer {admin_token()}"},
                    )
                    response.raise_for_status()
                for stream in (False, True):
                    n = args.requests if not stream else max(args.requests // 2, 100)
                    for c in (1, 10):
                        run, cpu = await measure(
                            svc.url, svc.pid, n=n, c=c, stream=stream, payload=body(stream, 50)
                        )
                        rows.append((name, "stream" if stream else "plain", c, run, cpu))
                cached = {**body(False, 50), "temperature": 0}
                run, cpu = await measure(
                    svc.url, svc.pid, n=args.requests, c=1, stream=False, payload=cached
                )
                hits.append((name, run, cpu))
    base = {(mode, c): run.p(0.5) for name, mode, c, run, _ in rows if name == "off"}
    header = [
        "set-up",
        "mode",
        "conc",
        "p50 / p95 ms",
        "added p50 vs off ms",
        "CPU ms/req",
        "errors",
    ]
    print("| " + " | ".join(header) + " |")
    print("|---|---|---|---|---|---|---|")
    for name, mode, c, run, cpu in rows:
        added = run.p(0.5) - base[(mode, c)]
        cells = [name, mode, str(c), f"{run.p(0.5):.2f} / {run.p(0.95):.2f}"]
        cells += [f"{added:+.2f}", f"{cpu:.2f}", str(run.errors)]
        print("| " + " | ".join(cells) + " |")
    print()
    print("Cache hits (temperature 0, repeated; concurrency 1):")
    print("| set-up | p50 / p95 ms (client-side) | service CPU ms/hit |")
    print("|---|---|---|")
    for name, run, cpu in hits:
        if name != "off":
            print(f"| {name} | {run.p(0.5):.2f} / {run.p(0.95):.2f} | {cpu:.2f} |")
    worst = max(
        run.p(0.5) - base[(mode, c)] for name, mode, c, run, _ in rows if name != "off" and c == 1
    )
    print()
    verdict = "PASS" if worst < 1 else "FAIL"
    print(f"Target: added p50 < 1 ms at concurrency 1 → worst {worst:+.2f} ms → {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.requests = 300
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
