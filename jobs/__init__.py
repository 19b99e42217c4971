"""Background work behind one interface: ingestion, re-embedding, evaluations.

Callers ``enqueue`` a named task with a JSON payload and never learn what runs it. The
embedded default runs tasks in this process (:class:`InProcessJobQueue`); at scale-out a
real queue (procrastinate on PostgreSQL, arq/SAQ on Redis) implements the same protocol
with the same task names, and callers do not change.
"""

from jobs.in_process import InProcessJobQueue
from jobs.queue import JobQueue, JobState

__all__ = ["InProcessJobQueue", "JobQueue", "JobState"]
