"""Ingestion on the real queue: the API enqueues, `ai-helper-core worker` processes run it.

One PostgreSQL, one ``chroma run`` server, the API process (jobs not run in it) and worker
subprocesses. A worker killed with SIGKILL mid-ingestion loses nothing: a second worker
takes the job after the heartbeat timeout and the document ends ready, with no duplicate.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import empty_service_tables
from tests.fakes.openai_server import FakeOpenAI
from tests.support.knowledge import search, upload
from tests.support.service import RunningService, ServiceFactory

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
TEXT = "\n\n".join(
    f"Section {i}. The VPN client is GlobalProtect zebra. " + "lorem ipsum dolor " * 45
    for i in range(3)
)


@pytest.fixture
def setup(
    tmp_path: Path, fake_openai: FakeOpenAI, pg_url: str, chroma_server: str
) -> Iterator[tuple[RunningService, Callable[[], subprocess.Popen[bytes]]]]:
    """The API process on the real queue, and a way to start worker processes."""
    factory = ServiceFactory(tmp_path, fake_openai.base_url, pg_url)
    empty_service_tables(factory)
    schema = f"ahc_jobs_{uuid.uuid4().hex[:8]}"
    api = factory.start(
        job_queue="procrastinate",
        job_schema=schema,
        job_run_in_api=False,
        chroma_url=chroma_server,
        knowledge_inline_max_bytes=10,
        embedding_model="text-embedding-3-small",
    )
    workers: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "AHC_DATABASE_URL": pg_url,
        "AHC_JOB_QUEUE": "procrastinate",
        "AHC_JOB_SCHEMA": schema,
        "AHC_JOB_STALLED_SECONDS": "2",
        "AHC_JOB_SHUTDOWN_SECONDS": "1",
        "AHC_CHROMA_URL": chroma_server,
        "AHC_DATA_DIR": str(tmp_path / "worker-data"),
        "AHC_OPENAI_API_KEY": "sk-service-key",
        "AHC_OPENAI_BASE_URL": fake_openai.base_url,
        "AHC_LOCAL_MODEL_BASE_URL": fake_openai.base_url,
        "AHC_EMBEDDING_MODEL": "text-embedding-3-small",
        "AHC_EMBEDDING_BATCH_SIZE": "1",  # one vector written per call: a death leaves some
        "AHC_LOG_LEVEL": "WARNING",
    }

    def start_worker() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--concurrency", "2"], cwd=ROOT, env=env
        )
        workers.append(proc)
        return proc

    yield api, start_worker
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    factory.close()


def status(api: RunningService, doc_id: str) -> dict[str, object]:
    """The document as the API shows it."""
    response = httpx.get(f"{api.api}/knowledge/documents/{doc_id}", headers=api.headers())
    return dict(response.json())


def wait_until(check: Callable[[], bool], seconds: float = 90) -> None:
    """Poll ``check`` until it holds."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_worker_processes_run_jobs_survive_kill_9_and_obey_cancel(
    setup: tuple[RunningService, Callable[[], subprocess.Popen[bytes]]], fake_openai: FakeOpenAI
) -> None:
    """One test, to start few processes: each worker costs seconds of imports."""
    api, start_worker = setup
    doc = upload(api, [("vpn.txt", TEXT.encode())]).json()["documents"][0]
    assert doc["status"] == "processing"  # queued: the API process runs no jobs

    fake_openai.delay_next(0.0)  # the first worker writes its first chunk's vector...
    fake_openai.delay_next(60.0)  # ...and its second embedding call hangs...
    first = start_worker()
    wait_until(lambda: embedding_calls(fake_openai) == 2)
    second = start_worker()
    first.send_signal(signal.SIGKILL)  # ...and it dies mid-job
    first.wait(10)
    assert status(api, doc["id"])["status"] == "processing"

    # The second worker takes the job once the dead one's heartbeat is 2 s old.
    wait_until(lambda: status(api, doc["id"])["status"] != "processing")
    final = status(api, doc["id"])
    assert final["status"] == "ready", final
    hits = search(api, "GlobalProtect zebra", mode="vector", k=20).json()["results"]
    # Every chunk once: the vector the dead run wrote was dropped, nothing duplicated.
    assert len(hits) == final["chunks"] >= 2
    assert len({h["text"] for h in hits}) == len(hits)

    # Cancel through the API stops the job where the worker runs it.
    calls = embedding_calls(fake_openai)
    fake_openai.delay_next(60.0)
    slow = upload(api, [("slow.txt", TEXT.replace("zebra", "okapi").encode())])
    slow_id = slow.json()["documents"][0]["id"]
    wait_until(lambda: embedding_calls(fake_openai) > calls)
    cancelled = httpx.post(f"{api.api}/knowledge/documents/{slow_id}/cancel", headers=api.headers())
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    time.sleep(1.5)  # the worker sees the abort request (polled each second) and stops
    assert status(api, slow_id)["status"] == "cancelled"
    hits = search(api, "okapi", mode="vector", k=20).json()["results"]
    assert hits and slow_id not in {h["document_id"] for h in hits}  # nothing of it indexed
    assert second.poll() is None  # the worker lives on


def embedding_calls(fake_openai: FakeOpenAI) -> int:
    """Embedding requests the fake upstream has received."""
    return sum(1 for r in fake_openai.requests if r.path.endswith("/embeddings"))


def test_the_api_process_runs_jobs_itself_by_default(
    tmp_path: Path, fake_openai: FakeOpenAI, pg_url: str
) -> None:
    factory = ServiceFactory(tmp_path, fake_openai.base_url, pg_url)
    empty_service_tables(factory)
    try:
        api = factory.start(
            job_queue="procrastinate",
            job_schema=f"ahc_jobs_{uuid.uuid4().hex[:8]}",
            knowledge_inline_max_bytes=200,
            embedding_model="text-embedding-3-small",
        )
        small = upload(api, [("small.txt", b"The VPN client is GlobalProtect.")])
        assert small.json()["documents"][0]["status"] == "ready"  # waited for inline
        large = upload(api, [("vpn.txt", TEXT.encode())]).json()["documents"][0]
        wait_until(lambda: status(api, large["id"])["status"] == "ready")
    finally:
        factory.close()


def test_procrastinate_needs_postgresql(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli import app

    env = {"AHC_JOB_QUEUE": "procrastinate", "AHC_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code == 2
    assert "AHC_JOB_QUEUE=procrastinate needs PostgreSQL" in result.output
    plain = CliRunner().invoke(app, ["worker"], env={"AHC_DATA_DIR": str(tmp_path)})
    assert plain.exit_code == 2 and "AHC_JOB_QUEUE=procrastinate" in plain.output


def test_db_upgrade_creates_the_job_tables_in_their_schema(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sqlalchemy as sa
    from typer.testing import CliRunner

    from cli import app
    from db.migrate import sync_url

    schema = f"ahc_jobs_{uuid.uuid4().hex[:8]}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AHC_DATABASE_URL", pg_url)
    monkeypatch.setenv("AHC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AHC_JOB_QUEUE", "procrastinate")
    monkeypatch.setenv("AHC_JOB_SCHEMA", schema)
    for _ in range(2):  # idempotent
        result = CliRunner().invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
    engine = sa.create_engine(sync_url(pg_url))
    try:
        inspector = sa.inspect(engine)
        assert "procrastinate_jobs" in inspector.get_table_names(schema=schema)
        assert not any(n.startswith("procrastinate") for n in inspector.get_table_names())
    finally:
        engine.dispose()
