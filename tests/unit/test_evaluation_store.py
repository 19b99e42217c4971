"""The guarded status moves of evaluations and the job body's redelivery (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.config import Settings
from core.errors import ApiError
from db.migrate import upgrade
from db.session import create_engine, create_sessionmaker
from services.evaluations.runner import EvaluationRunner
from services.evaluations.store import EvaluationStore


@pytest.fixture
async def store(tmp_path: Path, database_url: str | None) -> AsyncIterator[EvaluationStore]:
    """A store on migrated tables: a SQLite file in tmp_path, or the session's PostgreSQL."""
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=database_url)
    upgrade(settings)
    engine = create_engine(settings)
    sessions: async_sessionmaker[AsyncSession] = create_sessionmaker(engine)
    yield EvaluationStore(sessions)
    await engine.dispose()


async def new_row(store: EvaluationStore, org_id: str = "org-a") -> str:
    row = await store.create(
        org_id=org_id,
        template_name="greet",
        versions=[1],
        request={"versions": [1], "dataset": [{"variables": {}, "expected": None}]},
        total_items=1,
        created_by="alice",
    )
    return row.id


async def status(store: EvaluationStore, evaluation_id: str) -> str:
    row = await store.find(evaluation_id)
    assert row is not None
    return row.status


async def test_a_run_is_claimed_then_ended_once(store: EvaluationStore) -> None:
    evaluation_id = await new_row(store)
    assert await status(store, evaluation_id) == "queued"
    assert not await store.set_status(evaluation_id, "done")  # never claimed
    assert not await store.write_progress(evaluation_id, 1)
    assert await store.set_status(evaluation_id, "running")
    assert await store.set_status(evaluation_id, "running")  # a restart's re-queue claims again
    assert await store.write_progress(evaluation_id, 1)
    assert await store.set_status(evaluation_id, "done", results={"versions": []})
    row = await store.find(evaluation_id)
    assert row is not None
    assert (row.status, row.done_items, row.results, row.error) == (
        "done",
        1,
        {"versions": []},
        None,
    )
    assert row.started_at is not None and row.finished_at is not None
    for move in ("running", "done", "failed", "cancelled"):
        assert not await store.set_status(evaluation_id, move)  # type: ignore[arg-type]
    assert await status(store, evaluation_id) == "done"


@pytest.mark.parametrize("claimed", [False, True])
async def test_a_cancel_wins_over_the_job(store: EvaluationStore, claimed: bool) -> None:
    evaluation_id = await new_row(store)
    if claimed:
        assert await store.set_status(evaluation_id, "running")
    assert await store.set_status(evaluation_id, "cancelled", error="cancelled by the user")
    assert not await store.set_status(evaluation_id, "running")
    assert not await store.write_progress(evaluation_id, 1)  # how a running job notices
    assert not await store.set_status(evaluation_id, "done", results={"versions": []})
    assert not await store.set_status(evaluation_id, "failed", error="late")
    row = await store.find(evaluation_id)
    assert row is not None
    assert (row.status, row.error, row.results) == ("cancelled", "cancelled by the user", None)


async def test_get_is_the_orgs_and_the_templates(store: EvaluationStore) -> None:
    evaluation_id = await new_row(store, org_id="org-a")
    assert (await store.get("org-a", "greet", evaluation_id)).id == evaluation_id
    for org_id, name, wanted in (
        ("org-b", "greet", evaluation_id),
        ("org-a", "other", evaluation_id),
        ("org-a", "greet", "00000000-0000-0000-0000-000000000000"),
    ):
        with pytest.raises(ApiError) as error:
            await store.get(org_id, name, wanted)
        assert (error.value.status_code, error.value.code) == (404, "evaluation_not_found")


async def test_active_rows_are_what_a_restart_requeues(store: EvaluationStore) -> None:
    queued, running, done = [await new_row(store) for _ in range(3)]
    assert await store.set_status(running, "running")
    assert await store.set_status(done, "running")
    assert await store.set_status(done, "done")
    active = [row.id for row in await store.active()]
    assert queued in active and running in active and done not in active
    assert active.index(queued) < active.index(running)  # oldest first


class _Planner:
    """Stands in for the planner: counts plans, and may act on the row meanwhile."""

    def __init__(self, store: EvaluationStore, cancel: str | None = None) -> None:
        self.store = store
        self.cancel = cancel
        self.plans = 0

    async def plan(self, org_id: str, name: str, draft: Any) -> Any:
        self.plans += 1
        if self.cancel is not None:  # a user's cancel while the job plans
            await self.store.set_status(self.cancel, "cancelled", error="cancelled by the user")
        raise ApiError(422, "unknown_versions", "template 'greet' has no version 1")


def runner(store: EvaluationStore, planner: _Planner) -> EvaluationRunner:
    return EvaluationRunner(
        store=store,
        planner=planner,  # type: ignore[arg-type]
        gate=None,  # type: ignore[arg-type]
    )


async def test_a_delivery_for_a_finished_or_missing_evaluation_does_nothing(
    store: EvaluationStore,
) -> None:
    planner = _Planner(store)
    job = runner(store, planner)
    done, cancelled = await new_row(store), await new_row(store)
    assert await store.set_status(done, "running") and await store.set_status(done, "done")
    assert await store.set_status(cancelled, "cancelled")
    for evaluation_id in (done, cancelled, "00000000-0000-0000-0000-000000000000"):
        await job.run({"evaluation_id": evaluation_id})
    assert planner.plans == 0
    assert (await status(store, done), await status(store, cancelled)) == ("done", "cancelled")


async def test_the_job_ends_its_row_only_while_it_is_running(store: EvaluationStore) -> None:
    failing = await new_row(store)
    await runner(store, _Planner(store)).run({"evaluation_id": failing})
    row = await store.find(failing)
    assert row is not None
    assert (row.status, row.error) == (
        "failed",
        "unknown_versions: template 'greet' has no version 1",
    )

    cancelled = await new_row(store)
    await runner(store, _Planner(store, cancel=cancelled)).run({"evaluation_id": cancelled})
    row = await store.find(cancelled)
    assert row is not None
    assert (row.status, row.error) == ("cancelled", "cancelled by the user")
