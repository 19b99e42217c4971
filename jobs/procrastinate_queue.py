"""The job interface on procrastinate: jobs in PostgreSQL, run by any process that works them.

Why procrastinate: it needs no server beyond the PostgreSQL the service already shares,
speaks psycopg 3 (our driver and pool), and gives row-locked fetching, retries, cancellation
and worker heartbeats. Its tables live in a schema of their own (``ahc_jobs``), created once
under an advisory lock. Each job carries our ``job_id`` (a document or evaluation id) as its
``lock`` (one run at a time) and ``queueing_lock`` (one waiting copy), so enqueue is
idempotent and cancel/wait find it by that name.

Fairness: procrastinate fetches by priority, then age. A job's priority is minus the number
of the same org's jobs already waiting, so each org's n-th waiting job ranks with the other
orgs' n-th: one org's bulk upload waits behind itself, not in front of the others.

A worker that dies (kill -9) stops its heartbeat; any live worker hands its running jobs back
to the queue after ``stalled_seconds``. Handlers are idempotent per job (ingestion is atomic
per document, evaluations move status conditionally), so the re-run leaves no duplicate.
A poison job (one whose every delivery kills its worker: an out-of-memory parse, a native
crash) would otherwise take the workers down one after another forever: a job is delivered
at most ``max_attempts`` times, stalls included, and then marked failed, and its task's
``abandon`` hook records why where users look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from procrastinate import App, JobContext, PsycopgConnector, RetryDecision
from procrastinate.exceptions import AlreadyEnqueued, JobAborted
from procrastinate.job_context import AbortReason
from procrastinate.jobs import Job, Status
from procrastinate.retry import BaseRetryStrategy
from psycopg import AsyncConnection, sql
from sqlalchemy.engine import make_url

from jobs.queue import Abandon, Handler, JobState

logger = logging.getLogger(__name__)

_SETUP_LOCK_ID = 0x41484A51  # "AHJQ": instances create the schema one at a time
_STATES: dict[str, JobState] = {
    "todo": "queued",
    "doing": "running",
    "aborting": "running",
    "succeeded": "done",
    "failed": "failed",
    "cancelled": "cancelled",
    "aborted": "cancelled",
}
_TRANSIENT: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
_FINISHED: frozenset[JobState] = frozenset({"done", "failed", "cancelled", "unknown"})


def queue_for(task: str) -> str:
    """The procrastinate queue of a task: its area (``knowledge``, ``prompt``)."""
    return task.split(".", 1)[0] if "." in task else task


def libpq_url(database_url: str) -> str:
    """The libpq URL of a SQLAlchemy PostgreSQL URL (``postgresql+psycopg://`` and kin)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _transient(exception: BaseException) -> bool:
    """Whether a failure may pass by itself: network, timeouts, a dropped DB connection."""
    if isinstance(exception, _TRANSIENT):
        return True
    import httpx
    import psycopg
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exception, OperationalError | psycopg.OperationalError | httpx.TransportError):
        return True
    return isinstance(exception, DBAPIError) and bool(exception.connection_invalidated)


@dataclass(frozen=True)
class Backoff(BaseRetryStrategy):
    """Retry transient failures ``max_attempts`` times, waiting ``first`` s, doubling to ``cap``."""

    max_attempts: int
    first: float
    cap: float

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        """A later retry for a transient failure, none for the rest.

        A job stopped by its worker's shutdown always goes back, at once: that is no failure.
        """
        if isinstance(exception, asyncio.CancelledError):
            return RetryDecision(retry_in={"seconds": 0})
        if job.attempts + 1 >= self.max_attempts or not _transient(exception):
            return None
        seconds = min(self.cap, self.first * 2**job.attempts)
        return RetryDecision(retry_in={"seconds": seconds})


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a process works the queue (the API process, or ``ai-helper-core worker``)."""

    concurrency: int = 2
    queues: tuple[str, ...] | None = None
    """None: every queue."""
    stalled_seconds: float = 30.0
    """A worker silent this long is dead: its running jobs go back to the queue."""
    poll_seconds: float = 2.0
    """Fallback fetch interval (new jobs normally arrive by LISTEN/NOTIFY)."""
    shutdown_seconds: float = 10.0
    """On stop, running jobs get this long to finish; then they go back to the queue."""
    keep_hours: int = 24 * 7
    """Finished jobs (their visible status) are deleted after this long."""


class ProcrastinateJobQueue:
    """:class:`jobs.queue.JobQueue` on procrastinate; ``worker=None`` only enqueues."""

    def __init__(
        self,
        *,
        database_url: str,
        schema: str = "ahc_jobs",
        retry: Backoff | None = None,
        worker: WorkerOptions | None = None,
        pool_size: int = 4,
    ) -> None:
        self._conninfo = libpq_url(database_url)
        self._schema = schema
        self._retry = retry or Backoff(max_attempts=5, first=2.0, cap=300.0)
        self._worker = worker
        self._app = App(
            connector=PsycopgConnector(
                conninfo=self._conninfo,
                min_size=1,
                max_size=pool_size + (worker.concurrency if worker else 0),
                kwargs={"options": f"-c search_path={schema}"},
            )
        )
        self._tasks: dict[str, Any] = {}
        self._abandon: dict[str, Abandon] = {}
        self._running: list[asyncio.Task[None]] = []
        self._opened = False

    @property
    def app(self) -> App:
        """The procrastinate app (its job manager lists and inspects jobs)."""
        return self._app

    def register(self, task: str, handler: Handler, abandon: Abandon | None = None) -> None:
        """Make ``task`` a procrastinate task of the queue named after its area."""
        if abandon is not None:
            self._abandon[task] = abandon

        async def run(context: JobContext, *, payload: dict[str, Any], **_: Any) -> None:
            try:
                await handler(payload)
            except asyncio.CancelledError:
                if context.abort_reason() == AbortReason.USER_REQUEST:
                    raise JobAborted from None  # cancelled by a user: not retried
                raise  # a worker's shutdown: retried (see ``Backoff``)

        run.__name__ = run.__qualname__ = task.replace(".", "_")
        self._tasks[task] = self._app.task(
            name=task, queue=queue_for(task), retry=self._retry, pass_context=True
        )(run)

    async def start(self) -> None:
        """Open the pool, create the schema once, and work jobs if this process is a worker."""
        await ensure_schema(self._conninfo, self._schema)
        await self._app.open_async()
        self._opened = True
        if self._worker is not None:
            self._running = [
                asyncio.create_task(self._work(self._worker), name="procrastinate-worker"),
                asyncio.create_task(self._sweep(self._worker), name="procrastinate-stalled"),
            ]

    async def run_worker(self) -> None:
        """Work jobs until cancelled (``ai-helper-core worker``), after :meth:`start`."""
        await asyncio.gather(*self._running)

    async def aclose(self) -> None:
        """Stop working: running jobs are aborted and handed back to the queue."""
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        self._running = []
        if self._opened:
            await self._app.close_async()
            self._opened = False

    async def enqueue(
        self, task: str, payload: dict[str, Any], *, org_id: str, job_id: str
    ) -> None:
        """Queue one run behind the org's earlier jobs; a no-op while one is queued or running."""
        if task not in self._tasks:
            raise KeyError(f"no handler registered for task {task!r}")
        if await self.state(job_id) in ("queued", "running"):
            return
        waiting = await self._app.connector.execute_query_one_async(
            "SELECT count(*) AS n FROM procrastinate_jobs "
            "WHERE status = 'todo' AND args->>'org_id' = %(org_id)s",
            org_id=org_id,
        )
        deferrer = self._tasks[task].configure(
            lock=job_id, queueing_lock=job_id, priority=-int(waiting["n"])
        )
        with contextlib.suppress(AlreadyEnqueued):
            await deferrer.defer_async(payload=payload, org_id=org_id, job_id=job_id)

    async def cancel(self, job_id: str) -> bool:
        """Cancel a queued job, or ask its worker to stop it (the worker polls, ~1 s)."""
        row = await self._latest(job_id)
        if row is None or _STATES.get(row["status"]) not in ("queued", "running"):
            return False
        return await self._app.job_manager.cancel_job_by_id_async(row["id"], abort=True)

    async def state(self, job_id: str) -> JobState:
        """The job's state now (its latest run), as every instance sees it."""
        row = await self._latest(job_id)
        return "unknown" if row is None else _STATES.get(row["status"], "unknown")

    async def wait(self, job_id: str, seconds: float) -> JobState:
        """Poll the job's state until it finishes or ``seconds`` pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        delay = 0.05
        while True:
            state = await self.state(job_id)
            left = deadline - loop.time()
            if state in _FINISHED or left <= 0:
                return state
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.5)

    async def _latest(self, job_id: str) -> dict[str, Any] | None:
        """The newest run of ``job_id`` (a retried or re-enqueued job has several)."""
        rows: list[dict[str, Any]] = await self._app.connector.execute_query_all_async(
            "SELECT id, status FROM procrastinate_jobs WHERE lock = %(lock)s "
            "ORDER BY id DESC LIMIT 1",
            lock=job_id,
        )
        return rows[0] if rows else None

    async def _work(self, options: WorkerOptions) -> None:
        settings: dict[str, Any] = {
            "concurrency": options.concurrency,
            "install_signal_handlers": False,
            "fetch_job_polling_interval": options.poll_seconds,
            "abort_job_polling_interval": 1.0,
            "update_heartbeat_interval": max(0.5, options.stalled_seconds / 4),
            "stalled_worker_timeout": options.stalled_seconds,
            "shutdown_graceful_timeout": options.shutdown_seconds,
        }
        if options.queues:
            settings["queues"] = list(options.queues)
        await self._app.run_worker_async(**settings)

    async def _sweep(self, options: WorkerOptions) -> None:
        """Hand the jobs of dead workers back; forget finished jobs after ``keep_hours``."""
        manager = self._app.job_manager
        loop = asyncio.get_running_loop()
        next_cleanup = loop.time()
        while True:
            await asyncio.sleep(max(0.5, options.stalled_seconds / 2))
            try:
                stalled = await manager.get_stalled_jobs(
                    seconds_since_heartbeat=options.stalled_seconds
                )
                for job in stalled:
                    if options.queues and job.queue not in options.queues:
                        continue
                    await self._requeue_or_abandon(job)
                if loop.time() >= next_cleanup:
                    next_cleanup = loop.time() + 3600
                    await manager.delete_old_jobs(
                        nb_hours=options.keep_hours,
                        include_failed=True,
                        include_cancelled=True,
                        include_aborted=True,
                    )
            except Exception:
                logger.exception("could not re-queue stalled jobs")

    async def _requeue_or_abandon(self, job: Job) -> None:
        """A stalled job goes back to the queue, unless it has had all its deliveries."""
        manager = self._app.job_manager
        deliveries = job.attempts + 1
        if deliveries < self._retry.max_attempts:
            logger.warning("job %s (%s) lost its worker: re-queued", job.id, job.task_name)
            await manager.retry_job(job)
            return
        reason = f"its worker stopped during each of {deliveries} attempts"
        logger.error("job %s (%s): %s; given up", job.id, job.task_name, reason)
        await manager.finish_job(job, status=Status.FAILED, delete_job=False)
        abandon = self._abandon.get(job.task_name)
        if abandon is not None:
            payload = job.task_kwargs.get("payload")
            await abandon(payload if isinstance(payload, dict) else {}, reason)


async def ensure_schema(conninfo: str, schema: str) -> None:
    """Create procrastinate's tables in ``schema`` once (instances take turns by lock)."""
    from procrastinate.schema import SchemaManager

    async with await AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK_ID,))
        try:
            cursor = await conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".procrastinate_jobs',)
            )
            exists = await cursor.fetchone()
            if exists and exists[0]:
                return
            name = sql.Identifier(schema)
            await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
            await conn.execute(sql.SQL("SET search_path TO {}").format(name))
            await conn.execute(sql.SQL(SchemaManager.get_schema()))
            await conn.execute(
                "CREATE INDEX IF NOT EXISTS ahc_jobs_lock_id ON procrastinate_jobs (lock, id)"
            )
            await conn.execute(
                "CREATE INDEX IF NOT EXISTS ahc_jobs_org_todo ON procrastinate_jobs "
                "((args->>'org_id')) WHERE status = 'todo'"
            )
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_ID,))


def parse_queues(values: Iterable[str]) -> tuple[str, ...] | None:
    """``--queues knowledge,prompt`` as a tuple; None for every queue."""
    names = tuple(n.strip() for v in values for n in v.split(",") if n.strip())
    return names or None
