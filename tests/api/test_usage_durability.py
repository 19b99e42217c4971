"""No accepted usage event is lost: not when the database goes away, not at shutdown."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from accounting.events import UsageRecord
from accounting.recorder import UsageRecorder
from db.migrate import upgrade
from db.session import create_engine, create_sessionmaker
from tests.fakes.openai_server import FakeOpenAI
from tests.support.processes import Fleet
from tests.support.service import ServiceFactory


def event(i: int) -> UsageRecord:
    return UsageRecord(
        org_id="org-d",
        user_id="u",
        route="test",
        model="gpt-4o",
        provider="openai",
        prompt_tokens=i,
        completion_tokens=1,
        cost_usd=Decimal("0.000001"),
    )


async def count(engine) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    sa.text("SELECT count(*) FROM ahc_usage_events WHERE org_id = 'org-d'")
                )
            ).scalar_one()
        )


@pytest.mark.postgres
async def test_killing_the_database_connections_mid_run_loses_nothing(
    pg_url: str, tmp_path: Path, services: ServiceFactory
) -> None:
    settings = services.settings(database_url=pg_url)
    upgrade(settings)
    engine = create_engine(settings)
    recorder = UsageRecorder(
        create_sessionmaker(engine),
        spool_path=tmp_path / "spool.jsonl",
        flush_interval=0.02,
        max_backoff=0.1,
    )
    await recorder.start()
    database = pg_url.rsplit("/", 1)[1]
    for i in range(300):
        recorder.record(event(i))
        if i % 60 == 0:
            with psycopg.connect(
                "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
            ) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (database,),
                )
        await asyncio.sleep(0.003)
    await recorder.aclose()
    assert await count(engine) == 300
    assert not (tmp_path / "spool.jsonl").exists()
    await engine.dispose()


async def test_database_down_at_shutdown_spools_and_replays(
    tmp_path: Path, services: ServiceFactory
) -> None:
    settings = services.settings(database_url=None)
    upgrade(settings)
    spool = tmp_path / "spool.jsonl"
    broken = create_engine(
        settings.model_copy(
            update={"database_url": "sqlite+aiosqlite:////nonexistent/dir/db.sqlite"}
        )
    )
    recorder = UsageRecorder(create_sessionmaker(broken), spool_path=spool, flush_interval=0.01)
    await recorder.start()
    for i in range(50):
        recorder.record(event(i))
    await recorder.aclose(drain_seconds=0.2)
    assert spool.exists() and len(spool.read_text().splitlines()) == 50
    engine = create_engine(settings)
    again = UsageRecorder(create_sessionmaker(engine), spool_path=spool, flush_interval=0.01)
    await again.start()
    await again.aclose()
    assert await count(engine) == 50
    assert not spool.exists() and not spool.with_suffix(".replaying").exists()
    await engine.dispose()
    await broken.dispose()


async def test_retried_batch_is_not_counted_twice(tmp_path: Path, services: ServiceFactory) -> None:
    settings = services.settings(database_url=None)
    upgrade(settings)
    engine = create_engine(settings)
    recorder = UsageRecorder(create_sessionmaker(engine), spool_path=tmp_path / "s.jsonl")
    same = event(1)
    recorder.record(same)
    assert await recorder.flush()
    recorder.record(same)  # e.g. replayed after an ambiguous commit
    assert await recorder.flush()
    assert await count(engine) == 1
    await engine.dispose()


def test_the_journal_keeps_what_a_dead_process_held(tmp_path: Path) -> None:
    """Segments of a process that died (their locks free) are replayed, ours are not."""
    from accounting.journal import UsageJournal, remove

    directory = tmp_path / "journal"
    dead = UsageJournal(directory)
    assert dead.open() == []
    for i in range(3):
        dead.append(event(i))
    live = UsageJournal(directory)
    assert live.open() == []  # the first process still holds its segment
    dead.close(keep=True)  # its process dies: the lock goes, the file stays
    again = UsageJournal(directory)
    replayed = again.open()
    assert [e.prompt_tokens for e in replayed] == [0, 1, 2]
    remove(again.settled(again.seq))  # written to the database: the adopted segment goes
    assert len(list(directory.glob("*.jsonl"))) == 2  # live's and again's current segments
    live.close(keep=False)
    again.close(keep=False)
    assert list(directory.glob("*.jsonl")) == []


def test_kill_9_loses_no_accepted_usage_event(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """The process dies before its batch is written; the next start writes it."""
    env = {
        "AHC_OPENAI_API_KEY": "sk-service-key",
        "AHC_OPENAI_BASE_URL": fake_openai.base_url,
        "AHC_LOCAL_MODEL_BASE_URL": fake_openai.base_url,
        "AHC_USAGE_FLUSH_INTERVAL_SECONDS": "3600",  # nothing reaches the database by itself
        "AHC_USAGE_BATCH_SIZE": "1000",
        "AHC_LOG_LEVEL": "WARNING",
    }
    fleet = Fleet(tmp_path, env)
    try:
        first = fleet.serve("api")
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(5):
            answer = httpx.post(
                f"{first.api}/chat/completions", headers=first.headers(), json=body, timeout=30
            )
            assert answer.status_code == 200, answer.text
        first.kill()  # kill -9: no shutdown flush
        # The same data directory and database, flushing as usual.
        second = fleet.serve("api", AHC_USAGE_FLUSH_INTERVAL_SECONDS="0.25")
        report = httpx.get(f"{second.api}/usage", headers=second.headers(), timeout=30).json()
        deadline = time.monotonic() + 30
        while report["totals"]["requests"] < 5:
            assert time.monotonic() < deadline, report
            time.sleep(0.2)
            report = httpx.get(f"{second.api}/usage", headers=second.headers(), timeout=30).json()
        assert report["totals"]["requests"] == 5  # all five, once each
    finally:
        fleet.close()
