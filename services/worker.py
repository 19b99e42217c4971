"""``ai-helper-core worker``: a process that only runs background jobs from the shared queue.

It builds what the job table's handlers need (storage, metering, knowledge, evaluations) and
nothing of the API: no chat graphs, no LangServe, no embedded chat model server, no
migrations unless asked. Jobs come from procrastinate in PostgreSQL; any number of workers
and API instances share them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack

from core.config import Settings
from jobs.procrastinate_queue import ProcrastinateJobQueue, WorkerOptions
from providers.registry import ModelRegistry
from services.job_table import job_table, register_jobs
from services.prompt_evaluations import PromptEvaluations
from services.prompt_templates import PromptTemplates
from services.wiring import (
    open_jobs,
    open_knowledge,
    open_metering,
    open_speech,
    open_storage,
    prepare_runtime,
)

logger = logging.getLogger(__name__)


async def run_worker(
    settings: Settings,
    *,
    concurrency: int,
    queues: tuple[str, ...] | None,
    migrate: bool = False,
    recover: bool = False,
) -> None:
    """Work jobs until SIGTERM/SIGINT; running jobs are then handed back to the queue.

    ``recover``: first re-queue what was accepted and not finished (documents, evaluations),
    e.g. once after switching from the in-process queue; enqueue is idempotent per job.
    """
    await prepare_runtime(settings, migrate=migrate)
    options = WorkerOptions(
        concurrency=concurrency,
        queues=queues,
        stalled_seconds=settings.job_stalled_seconds,
        shutdown_seconds=settings.job_shutdown_seconds,
    )
    async with AsyncExitStack() as stack:
        storage = await open_storage(stack, settings)
        registry = ModelRegistry(settings)
        registry.open()
        stack.push_async_callback(registry.aclose)
        metering = await open_metering(stack, settings, storage, registry)
        jobs = open_jobs(settings, worker=options)
        if not isinstance(jobs, ProcrastinateJobQueue):
            raise RuntimeError("ai-helper-core worker needs AHC_JOB_QUEUE=procrastinate")
        knowledge = await open_knowledge(stack, settings, storage, metering, jobs)
        evaluations = PromptEvaluations(
            sessions=storage.sessions,
            templates=PromptTemplates(storage.sessions),
            gate=metering.gate,
            embeddings=knowledge.embeddings,
            jobs=jobs,
        )
        speech = await open_speech(stack, settings, storage, metering, jobs)
        register_jobs(
            jobs,
            job_table(knowledge=knowledge.service, prompt_evaluations=evaluations, speech=speech),
        )
        await jobs.start()
        stack.push_async_callback(jobs.aclose)
        if recover:
            documents = await knowledge.service.recover()
            runs = await evaluations.recover()
            transcriptions = await speech.transcription_jobs.recover()
            logger.info(
                "re-queued %d documents, %d evaluations and %d transcriptions",
                documents,
                runs,
                transcriptions,
            )
        loop = asyncio.get_running_loop()
        work = asyncio.ensure_future(jobs.run_worker())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, work.cancel)
        logger.info("worker started (concurrency %d, queues %s)", concurrency, queues or "all")
        try:
            await work
        except asyncio.CancelledError:
            logger.info("worker stopping: running jobs go back to the queue")
