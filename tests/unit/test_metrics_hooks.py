"""The metric hooks outside HTTP: the job queue's gauges and multiprocess mode."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from core.metrics import render
from jobs.in_process import InProcessJobQueue

ROOT = Path(__file__).resolve().parents[2]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_job_queue_depth_age_running_and_throughput() -> None:
    task = f"t-{uuid.uuid4().hex[:8]}"
    release = asyncio.Event()

    async def work(_: dict[str, Any]) -> None:
        await release.wait()

    queue = InProcessJobQueue(workers=1)
    queue.register(task, work)
    await queue.start()
    try:
        for i in range(3):
            await queue.enqueue(task, {}, org_id="o", job_id=f"{task}-{i}")
        await asyncio.sleep(0.1)
        render()  # the age is taken at scrape time
        assert sample("ahc_jobs_queued", task=task) == 2
        assert sample("ahc_jobs_running", task=task) == 1
        assert sample("ahc_jobs_oldest_queued_age_seconds") >= 0.09
        assert await queue.cancel(f"{task}-2") is True
        assert sample("ahc_jobs_queued", task=task) == 1
        release.set()
        assert await queue.wait(f"{task}-1", 5) == "done"
        await asyncio.sleep(0)
        assert sample("ahc_jobs_finished_total", task=task, state="done") == 2
        assert sample("ahc_jobs_finished_total", task=task, state="cancelled") == 1
        assert sample("ahc_jobs_queued", task=task) == 0
        assert sample("ahc_jobs_running", task=task) == 0
    finally:
        await queue.aclose()
    render()
    assert sample("ahc_jobs_oldest_queued_age_seconds") == 0  # a closed queue is not watched


async def test_a_closed_queue_leaves_no_waiting_jobs_counted() -> None:
    task = f"t-{uuid.uuid4().hex[:8]}"

    async def work(_: dict[str, Any]) -> None:
        return None

    queue = InProcessJobQueue(workers=1)
    queue.register(task, work)
    await queue.enqueue(task, {}, org_id="o", job_id=f"{task}-0")
    assert sample("ahc_jobs_queued", task=task) == 1
    await queue.aclose()
    assert sample("ahc_jobs_queued", task=task) == 0


def test_multiprocess_mode_adds_up_every_worker(tmp_path: Path) -> None:
    """Two processes write to PROMETHEUS_MULTIPROC_DIR; a third one's scrape sums them."""
    record = textwrap.dedent(
        """
        from decimal import Decimal
        from core.metrics import observe_usage
        observe_usage(org_id="org-mp", model="m", provider="p", prompt_tokens=5,
                      completion_tokens=0, cost_usd=Decimal("0.5"), latency_ms=10,
                      cached=False, status="ok", error_code=None)
        """
    )
    scrape = (
        "import sys; from core.metrics import render; sys.stdout.buffer.write(render(sys.argv[1]))"
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", record], cwd=ROOT, env=env, check=True)
    out = subprocess.run(
        [sys.executable, "-c", scrape, str(tmp_path)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert 'ahc_tokens_total{kind="prompt",model="m",org="org-mp"} 10.0' in out
    assert 'ahc_upstream_duration_seconds_count{provider="p",status="ok"} 2.0' in out
