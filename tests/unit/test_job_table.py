"""The one table of job names → handlers and abandon hooks: what a process registers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from core.config import Settings
from jobs.in_process import InProcessJobQueue
from services.job_table import Job, job_table, register_jobs
from services.knowledge import INGEST_TASK, REEMBED_TASK, KnowledgeService

_DEFAULTS = Settings.model_fields


def _knowledge() -> KnowledgeService:
    """A service built from placeholders: construction does no I/O and registers nothing."""
    stub = cast(
        Any,
        SimpleNamespace(
            org_cache_seconds=1.0,
            # Search's constructor sets the process's keyword cache budget: keep the defaults.
            knowledge_keyword_cache_postings=_DEFAULTS["knowledge_keyword_cache_postings"].default,
            knowledge_keyword_warm_postings=_DEFAULTS["knowledge_keyword_warm_postings"].default,
            knowledge_search_turns=2,
        ),
    )
    return KnowledgeService(
        settings=stub,
        sessions=stub,
        vectors=stub,
        embeddings=stub,
        accountant=stub,
        jobs=stub,
        provider_keys=stub,
        limits=stub,
    )


def test_knowledge_jobs_and_their_abandon_hooks_are_in_the_table() -> None:
    knowledge = _knowledge()
    assert job_table(knowledge=knowledge) == {
        INGEST_TASK: Job(knowledge.run_ingest_job, knowledge.abandon_ingest_job),
        REEMBED_TASK: Job(knowledge.run_reembed_job, knowledge.abandon_reembed_job),
    }
    assert job_table() == {}


async def test_register_jobs_registers_every_entry() -> None:
    queue = InProcessJobQueue(workers=1)
    register_jobs(queue, job_table(knowledge=_knowledge()))
    assert set(queue._handlers) == {INGEST_TASK, REEMBED_TASK}


def test_speech_transcription_jobs_are_in_the_table() -> None:
    from services.speech import TRANSCRIBE_TASK, SpeechService

    jobs = SimpleNamespace(run_job=object(), abandon_job=object())
    speech = cast(Any, SimpleNamespace(transcription_jobs=jobs))
    table = job_table(speech=cast(SpeechService, speech))
    assert table == {TRANSCRIBE_TASK: Job(jobs.run_job, jobs.abandon_job)}  # type: ignore[arg-type]
    assert TRANSCRIBE_TASK == "speech.transcribe"  # procrastinate queue `speech`
