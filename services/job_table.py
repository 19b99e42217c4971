"""The one table of background job names → handlers, registered before the queue starts.

Services expose their job bodies as methods and never register themselves, so a process
(the server, a worker, the CLI) registers exactly the jobs of the services it built.
Add an area as one keyword argument and its entries.
"""

from __future__ import annotations

from jobs.queue import Handler, JobQueue
from services.knowledge import INGEST_TASK, REEMBED_TASK, KnowledgeService


def job_handlers(*, knowledge: KnowledgeService | None = None) -> dict[str, Handler]:
    """The handlers of the given services' jobs, by task name."""
    table: dict[str, Handler] = {}
    if knowledge is not None:
        table[INGEST_TASK] = knowledge.run_ingest_job
        table[REEMBED_TASK] = knowledge.run_reembed_job
    return table


def register_jobs(jobs: JobQueue, handlers: dict[str, Handler]) -> None:
    """Register every handler of ``handlers`` on ``jobs`` (before ``jobs.start()``)."""
    for task, handler in handlers.items():
        jobs.register(task, handler)
