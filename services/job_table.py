"""The job table: every background task's name, the handler that runs it, and its abandon hook.

One place, instead of each service registering itself in its constructor: services expose
their job bodies, and a process (the server, a worker, the CLI) registers exactly the jobs
of the services it built, before the queue starts. Add an area as one keyword argument and
its entries.
"""

from __future__ import annotations

from typing import NamedTuple

from jobs.queue import Abandon, Handler, JobQueue
from services.knowledge import INGEST_TASK, REEMBED_TASK, KnowledgeService
from services.prompt_evaluations import EVALUATE_TASK, PromptEvaluations
from services.speech import TRANSCRIBE_TASK, SpeechService


class Job(NamedTuple):
    """One task: what runs it, and what its owner records when the queue gives up on it.

    A poison job's workers keep dying in it, so its handler never gets to say so.
    """

    run: Handler
    abandon: Abandon


def job_table(
    *,
    knowledge: KnowledgeService | None = None,
    prompt_evaluations: PromptEvaluations | None = None,
    speech: SpeechService | None = None,
) -> dict[str, Job]:
    """The jobs of the given services, by task name."""
    table: dict[str, Job] = {}
    if knowledge is not None:
        table[INGEST_TASK] = Job(knowledge.run_ingest_job, knowledge.abandon_ingest_job)
        table[REEMBED_TASK] = Job(knowledge.run_reembed_job, knowledge.abandon_reembed_job)
    if prompt_evaluations is not None:
        table[EVALUATE_TASK] = Job(prompt_evaluations.job_handler, prompt_evaluations.abandon_job)
    if speech is not None:
        transcriptions = speech.transcription_jobs
        table[TRANSCRIBE_TASK] = Job(transcriptions.run_job, transcriptions.abandon_job)
    return table


def register_jobs(jobs: JobQueue, table: dict[str, Job]) -> None:
    """Register every job of ``table`` on ``jobs`` (before ``jobs.start()``)."""
    for task, job in table.items():
        jobs.register(task, job.run, job.abandon)
