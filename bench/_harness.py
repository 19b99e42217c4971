"""Shared pieces of the benchmarks: start the fake upstream and the service, load, stats."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import jwt

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-bench-secret-bench-secret-!!"


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def scratch_database(prefix: str = "ahc_bench") -> Iterator[str]:
    """A throw-away PostgreSQL database (created next to ``postgres``, dropped afterwards)."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its descendants alive now (worker processes)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += cpu_seconds(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def token(org: str = "bench-org", user: str = "bench") -> str:
    return jwt.encode({"sub": user, "org_id": org, "exp": int(time.time()) + 7200}, SECRET, "HS256")


@contextmanager
def fake_server(module: str, core: int | None = 1, *args: str) -> Iterator[str]:
    """A fake provider (``python -m <module> *args``) in its own process; yields its URL.

    Pinned to ``core`` (None: not pinned); the URL is the one its ``READY <url>`` line names.
    """
    command = [sys.executable, "-m", module, *args]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.match(r"READY (\S+)", line)
        if not match:
            raise RuntimeError(f"{module} did not start: {line!r}")
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def fake_upstream(core: int = 1) -> Iterator[str]:
    """The fake OpenAI server in its own process, pinned to ``core``; yields its base URL."""
    with fake_server("tests.fakes.openai_server", core, "--port", "0") as url:
        yield url


@dataclass
class Service:
    url: str
    pid: int


@contextmanager
def service(
    upstream: str,
    *,
    core: int | str = 0,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[Service]:
    """The service in one uvicorn worker pinned to ``core``, upstream = the fake.

    ``workers`` > 1: ``ai-helper-core serve --workers N`` as deployed (it migrates once, then
    starts the worker processes); ``core`` may then list several (``"0,1"``). The pid is
    the supervisor's: read its CPU with :func:`tree_cpu_seconds`.
    """
    port = free_port()
    data = tempfile.mkdtemp(prefix="ahc-bench-")
    environment = {
        **os.environ,
        "AHC_DATA_DIR": data,
        "AHC_JWT_SECRET": SECRET,
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": upstream,
        "AHC_LOCAL_MODEL_BASE_URL": upstream,
        "AHC_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    if workers > 1:
        command = [
            *("-c", "from cli import app; app()", "serve"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
        ]
    else:
        command = [
            *("-m", "uvicorn", "server:app", "--host", "127.0.0.1", "--port", str(port)),
            *("--loop", "uvloop", "--http", "httptools", "--no-access-log"),
            *("--log-level", "warning"),
        ]
    proc = subprocess.Popen(
        ["taskset", "-c", str(core), sys.executable, *command],
        cwd=ROOT,
        env=environment,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # importing the app takes ~50 s at load 10
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.1)
        yield Service(url=url, pid=proc.pid)
    finally:
        proc.terminate()
        proc.wait(15)


@dataclass
class Run:
    """Latencies (seconds) of one phase."""

    latencies: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0

    def p(self, q: float, values: list[float] | None = None) -> float:
        data = sorted(self.latencies if values is None else values)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, int(q * len(data)))] * 1000

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0


async def load(
    url: str, body: dict, headers: dict[str, str], *, requests: int, concurrency: int, stream: bool
) -> Run:
    """Send ``requests`` POSTs with ``concurrency`` workers over keep-alive connections."""
    run = Run()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    remaining = iter(range(requests))

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            for _ in remaining:
                started = time.perf_counter()
                try:
                    async with session.post(url, json=body) as response:
                        if response.status != 200:
                            run.errors += 1
                            await response.read()
                            continue
                        if stream:
                            first = None
                            async for line in response.content:
                                if first is None and _fragment(line):
                                    first = time.perf_counter() - started
                            run.ttft.append(first or float("nan"))
                        else:
                            await response.read()
                except aiohttp.ClientError:
                    run.errors += 1
                    continue
                run.latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.wall = time.perf_counter() - began
    return run


def _fragment(line: bytes) -> bool:
    """Whether an SSE line carries answer text or a tool call's argument fragment."""
    return (b'"content":"' in line and b'"content":""' not in line) or (
        b'"arguments":"' in line and b'"arguments":""' not in line
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
