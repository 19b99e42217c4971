"""The job table: every background task's name and the handler that runs it.

One place, instead of each service registering itself in its constructor: services expose
their job bodies, and a process (the server, a worker, the CLI) registers exactly the jobs
of the services it built, before the queue starts. Add an area as one keyword argument and
its entries.
"""

from __future__ import annotations

from jobs.queue import Abandon, Handler, JobQueue
from services.knowledge import INGEST_TASK, REEMBED_TASK, KnowledgeService
from services.prompt_evaluations import EVALUATE_TASK, PromptEvaluations
from services.speech import TRANSCRIBE_TASK, SpeechService


def job_handlers(
    *,
    knowledge: KnowledgeService | None = None,
    prompt_evaluations: PromptEvaluations | None = None,
    speech: SpeechService | None = None,
) -> dict[str, Handler]:
    """The handlers of the given services' jobs, by task name."""
    table: dict[str, Handler] = {}
    if knowledge is not None:
        table[INGEST_TASK] = knowledge.run_ingest_job
        table[REEMBED_TASK] = knowledge.run_reembed_job
    if prompt_evaluations is not None:
        table[EVALUATE_TASK] = prompt_evaluations.job_handler
    if speech is not None:
        table[TRANSCRIBE_TASK] = speech.transcription_jobs.run_job
    return table


def job_abandoners(
    *,
    knowledge: KnowledgeService | None = None,
    prompt_evaluations: PromptEvaluations | None = None,
    speech: SpeechService | None = None,
) -> dict[str, Abandon]:
    """What each task's owner records when the queue gives up on one of its jobs."""
    table: dict[str, Abandon] = {}
    if knowledge is not None:
        table[INGEST_TASK] = knowledge.abandon_ingest_job
        table[REEMBED_TASK] = knowledge.abandon_reembed_job
    if prompt_evaluations is not None:
        table[EVALUATE_TASK] = prompt_evaluations.abandon_job
    if speech is not None:
        table[TRANSCRIBE_TASK] = speech.transcription_jobs.abandon_job
    return table


def register_jobs(
    jobs: JobQueue, handlers: dict[str, Handler], abandoners: dict[str, Abandon] | None = None
) -> None:
    """Register every handler of ``handlers`` on ``jobs`` (before ``jobs.start()``)."""
    for task, handler in handlers.items():
        jobs.register(task, handler, (abandoners or {}).get(task))
