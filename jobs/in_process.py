"""The embedded default of the job interface: a bounded, org-fair worker pool in-process.

Each organization has its own FIFO; workers take from the organizations in turn (round
robin), so one org's bulk upload of a thousand files waits behind itself, not in front of
another org's single document. At most ``workers`` jobs run at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.metrics import collectors, watch_oldest_job
from jobs.queue import Abandon, Handler, JobState

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    job_id: str
    task: str
    payload: dict[str, Any]
    org_id: str
    state: JobState = "queued"
    done: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task[None] | None = None
    queued_at: float = field(default_factory=time.monotonic)


class InProcessJobQueue:
    """Runs jobs on this process's event loop with at most ``workers`` at a time."""

    def __init__(self, *, workers: int = 2, keep_finished: int = 10_000) -> None:
        self._workers = workers
        self._handlers: dict[str, Handler] = {}
        self._queues: OrderedDict[str, deque[_Job]] = OrderedDict()
        self._jobs: dict[str, _Job] = {}
        self._finished: deque[str] = deque()
        self._keep_finished = keep_finished
        self._wakeup = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._unwatch: Callable[[], None] | None = None

    def register(self, task: str, handler: Handler, abandon: Abandon | None = None) -> None:
        """Make ``task`` runnable (``abandon`` is unused: a death here is the process's)."""
        self._handlers[task] = handler

    async def enqueue(
        self, task: str, payload: dict[str, Any], *, org_id: str, job_id: str
    ) -> None:
        """Queue a job behind the same org's earlier jobs."""
        if task not in self._handlers:
            raise KeyError(f"no handler registered for task {task!r}")
        existing = self._jobs.get(job_id)
        if existing is not None and existing.state in ("queued", "running"):
            return  # already in line: enqueue is idempotent per job id
        job = _Job(job_id, task, payload, org_id)
        self._jobs[job_id] = job
        async with self._wakeup:
            self._queues.setdefault(org_id, deque()).append(job)
            collectors().jobs_queued.labels(task).inc()
            self._wakeup.notify()

    async def cancel(self, job_id: str) -> bool:
        """Drop or stop the job."""
        job = self._jobs.get(job_id)
        if job is None or job.state not in ("queued", "running"):
            return False
        if job.state == "queued":
            queue = self._queues.get(job.org_id)
            if queue is not None and job in queue:
                queue.remove(job)
                collectors().jobs_queued.labels(job.task).dec()
            self._finish(job, "cancelled")
            return True
        if job.runner is not None:
            job.runner.cancel()
        return True

    async def wait(self, job_id: str, seconds: float) -> JobState:
        """Wait for the job to finish, at most ``seconds``."""
        job = self._jobs.get(job_id)
        if job is None:
            return "unknown"
        try:
            await asyncio.wait_for(job.done.wait(), seconds)
        except TimeoutError:
            pass
        return job.state

    def state(self, job_id: str) -> JobState:
        """Where the job is now."""
        job = self._jobs.get(job_id)
        return job.state if job is not None else "unknown"

    async def start(self) -> None:
        """Start the workers (and report the oldest waiting job's age to ``/metrics``)."""
        self._unwatch = watch_oldest_job(self._oldest_age)
        self._tasks = [
            asyncio.create_task(self._work(), name=f"job-worker-{i}") for i in range(self._workers)
        ]

    async def aclose(self) -> None:
        """Cancel the workers and what they run."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for queue in self._queues.values():  # they stay queued here, but no longer wait
            for job in queue:
                collectors().jobs_queued.labels(job.task).dec()
        self._queues.clear()

    async def _next(self) -> _Job:
        """The next job, taking organizations in turn."""
        async with self._wakeup:
            while True:
                for org_id in list(self._queues):
                    queue = self._queues[org_id]
                    if not queue:
                        del self._queues[org_id]
                        continue
                    job = queue.popleft()
                    collectors().jobs_queued.labels(job.task).dec()
                    self._queues.move_to_end(org_id)  # this org goes to the back of the line
                    return job
                await self._wakeup.wait()

    async def _work(self) -> None:
        while True:
            job = await self._next()
            job.state = "running"
            running = collectors().jobs_running.labels(job.task)
            running.inc()
            job.runner = asyncio.create_task(
                self._handlers[job.task](job.payload), name=f"job-{job.task}-{job.job_id}"
            )
            try:
                await asyncio.shield(job.runner)
                self._finish(job, "done")
            except asyncio.CancelledError:
                if not job.runner.done():  # the worker itself is being stopped
                    job.runner.cancel()
                    await asyncio.gather(job.runner, return_exceptions=True)
                    self._finish(job, "cancelled")
                    raise
                self._finish(job, "cancelled")
            except Exception:
                logger.exception("job %s (%s) failed", job.job_id, job.task)
                self._finish(job, "failed")
            finally:
                running.dec()

    def _oldest_age(self) -> float:
        """Seconds the oldest waiting job has waited (0 when none waits)."""
        heads = [queue[0].queued_at for queue in self._queues.values() if queue]
        return time.monotonic() - min(heads) if heads else 0.0

    def _finish(self, job: _Job, state: JobState) -> None:
        job.state = state
        job.runner = None
        collectors().jobs_finished.labels(job.task, state).inc()
        job.done.set()
        self._finished.append(job.job_id)
        while len(self._finished) > self._keep_finished:
            self._jobs.pop(self._finished.popleft(), None)
