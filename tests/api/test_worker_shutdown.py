"""SIGTERM stops ``ai-helper-core worker`` gracefully: its running job goes back to the queue.

The worker is a real subprocess mid-ingestion (its embedding call hangs upstream). On
SIGTERM it gives the job ``AHC_JOB_SHUTDOWN_SECONDS`` (1 s here), then aborts it and hands
it back (procrastinate status ``todo``, not failed, not left ``doing`` for the stalled-job
sweep), and exits 0. The next worker runs the job to ``ready``, every chunk once.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from jobs.procrastinate_queue import libpq_url
from tests.api.test_job_worker import TEXT, embedding_calls, setup, status, wait_until
from tests.fakes.openai_server import FakeOpenAI
from tests.support.knowledge import search, upload
from tests.support.service import RunningService

# Two worker processes, each seconds of imports (a minute on a loaded 2-core machine).
pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]
__all__ = ["setup"]  # the fixture: the API on the real queue, and worker processes


def job_statuses(api: RunningService) -> list[str]:
    """procrastinate's own status of every job in this test's schema."""
    settings = api.settings
    with psycopg.connect(libpq_url(settings.resolved_database_url)) as conn:
        query = sql.SQL("SELECT status FROM {}.procrastinate_jobs").format(
            sql.Identifier(settings.job_schema)
        )
        return [str(row[0]) for row in conn.execute(query)]


def test_sigterm_hands_the_running_job_back_and_exits_0(
    setup: tuple[RunningService, Callable[[], subprocess.Popen[bytes]]], fake_openai: FakeOpenAI
) -> None:
    api, start_worker = setup
    doc = upload(api, [("vpn.txt", TEXT.encode())]).json()["documents"][0]
    fake_openai.delay_next(60.0)  # the worker's first embedding call hangs: mid-job
    worker = start_worker()
    wait_until(lambda: embedding_calls(fake_openai) == 1, 120)
    assert job_statuses(api) == ["doing"]

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert job_statuses(api) == ["todo"]  # handed back at once, ready for the next worker
    assert status(api, doc["id"])["status"] == "processing"

    start_worker()
    wait_until(lambda: status(api, doc["id"])["status"] != "processing", 120)
    final = status(api, doc["id"])
    assert final["status"] == "ready", final
    hits = search(api, "GlobalProtect zebra", mode="vector", k=20).json()["results"]
    assert len(hits) == final["chunks"] >= 2  # every chunk once
