"""The one table of job names → handlers: what a process registers before its queue starts."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from jobs.in_process import InProcessJobQueue
from services.job_table import job_abandoners, job_handlers, register_jobs
from services.knowledge import INGEST_TASK, REEMBED_TASK, KnowledgeService


def _knowledge() -> KnowledgeService:
    """A service built from placeholders: construction does no I/O and registers nothing."""
    stub = cast(Any, SimpleNamespace(org_cache_seconds=1.0))
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


def test_knowledge_jobs_are_in_the_table() -> None:
    knowledge = _knowledge()
    table = job_handlers(knowledge=knowledge)
    assert table == {
        INGEST_TASK: knowledge.run_ingest_job,
        REEMBED_TASK: knowledge.run_reembed_job,
    }
    assert job_handlers() == {}


async def test_register_jobs_registers_every_entry() -> None:
    queue = InProcessJobQueue(workers=1)
    register_jobs(queue, job_handlers(knowledge=_knowledge()))
    assert set(queue._handlers) == {INGEST_TASK, REEMBED_TASK}


def test_every_knowledge_job_has_an_abandon_hook() -> None:
    knowledge = _knowledge()
    assert job_abandoners(knowledge=knowledge) == {
        INGEST_TASK: knowledge.abandon_ingest_job,
        REEMBED_TASK: knowledge.abandon_reembed_job,
    }
    assert job_abandoners() == {}


def test_speech_transcription_jobs_are_in_the_table() -> None:
    from services.speech import TRANSCRIBE_TASK, SpeechService

    jobs = SimpleNamespace(run_job=object(), abandon_job=object())
    speech = cast(Any, SimpleNamespace(transcription_jobs=jobs))
    table = job_handlers(speech=cast(SpeechService, speech))
    assert table == {TRANSCRIBE_TASK: jobs.run_job}
    assert job_abandoners(speech=cast(SpeechService, speech)) == {TRANSCRIBE_TASK: jobs.abandon_job}
    assert TRANSCRIBE_TASK == "speech.transcribe"  # procrastinate queue `speech`
