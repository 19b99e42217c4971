"""The job table: every background task's name and the handler that runs it.

One place, instead of each service registering itself in its constructor: a worker process
builds only the services whose jobs it runs and registers this table before the queue
starts (``services.container.open_services`` does so for the app).
"""

from __future__ import annotations

from jobs.queue import Handler
from services.prompt_evaluations import EVALUATE_TASK, PromptEvaluations


def job_handlers(*, prompt_evaluations: PromptEvaluations) -> dict[str, Handler]:
    """Job name → handler, for ``JobQueue.register`` before ``JobQueue.start``."""
    return {EVALUATE_TASK: prompt_evaluations.job_handler}
