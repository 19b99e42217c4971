"""Long uploads transcribed as jobs: accepted (202), stored, run through the job interface.

``POST /api/speech/transcribe`` with audio longer than ``speech_sync_max_seconds``: the
model is checked, the audio decoded, its seconds and cost held on the caller's limits
(429 when over), the upload stored in ``ahc_speech_transcriptions`` and one job
(task ``speech.transcribe``, job id = the transcription's id) enqueued. The job transcribes
(in pieces, ``services.speech.pieces``), stores the transcript and records the one usage
event, which settles the hold. A restart re-queues what was accepted and not finished
(:meth:`TranscriptionJobs.recover`); the hold then stays counted as the job's usage.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounting.events import CallContext
from auth.tokens import Principal
from core.config import Settings
from core.errors import ApiError
from core.request_id import current_request_id
from db.base import utcnow
from db.models import SpeechTranscription
from jobs.queue import JobQueue
from providers.speech.types import Segment, Transcript
from services.metering import MeteredCall, MeteringGate
from services.speech.access import error_code
from services.speech.options import TRANSCRIBE_ROUTE, TranscribeOptions
from services.speech.transcription import Prepared, Transcription
from speech.render import as_json

logger = logging.getLogger(__name__)

TRANSCRIBE_TASK = "speech.transcribe"
ACTIVE = ("queued", "running")


class TranscriptionJobs:
    """Accepts long transcriptions, runs them as jobs, answers their state."""

    def __init__(
        self,
        settings: Settings,
        *,
        sessions: async_sessionmaker[AsyncSession],
        transcription: Transcription,
        gate: MeteringGate,
        jobs: JobQueue,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._transcription = transcription
        self._gate = gate
        self._jobs = jobs
        self._holds: dict[str, MeteredCall] = {}  # this process's holds, by job id

    async def submit(
        self,
        principal: Principal,
        data: bytes,
        filename: str,
        options: TranscribeOptions,
        *,
        response_format: str = "json",
    ) -> Transcript | SpeechTranscription:
        """The transcript of a short file at once; a long one accepted as a job (its row)."""
        prepared = await self._transcription.prepare(principal.org_id, data, filename, options)
        call = await self._transcription.hold(principal, prepared, TRANSCRIBE_ROUTE)
        if prepared.request.duration_s <= self._settings.speech_sync_max_seconds:
            return await self._transcription.run(prepared, call)
        try:
            row = await self._store(principal, data, filename, options, prepared, response_format)
        except BaseException:
            call.release()
            raise
        if self._settings.job_queue == "in_process":
            self._holds[row.id] = call  # settled by the job's usage event, in this process
        await self._enqueue(row)
        return row

    async def _store(
        self,
        principal: Principal,
        data: bytes,
        filename: str,
        options: TranscribeOptions,
        prepared: Prepared,
        response_format: str,
    ) -> SpeechTranscription:
        row = SpeechTranscription(
            id=str(uuid.uuid4()),
            org_id=principal.org_id,
            user_id=principal.user_id,
            request_id=current_request_id(),
            filename=(filename or "audio").rsplit("/", 1)[-1][:255],
            model=prepared.request.model,
            options={
                "language": options.language,
                "prompt": options.prompt,
                "response_format": response_format,
            },
            duration_s=round(prepared.request.duration_s, 3),
            status="queued",
            audio=data,
            created_at=utcnow(),
        )
        async with self._sessions() as session:
            session.add(row)
            await session.commit()
            await session.refresh(row)
            session.expunge(row)
        return row

    async def get(self, principal: Principal, transcription_id: str) -> SpeechTranscription:
        """The caller's transcription (an admin: any of the org's); 404 otherwise."""
        async with self._sessions() as session:
            row = await session.get(SpeechTranscription, transcription_id)
        mine = row is not None and row.org_id == principal.org_id
        if row is None or not mine or not (principal.is_admin or row.user_id == principal.user_id):
            raise ApiError(
                404, "not_found", f"no transcription '{transcription_id}' in this organization"
            )
        return row

    async def recover(self) -> int:
        """Queue again the transcriptions a restart interrupted (``queued`` or ``running``)."""
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    select(SpeechTranscription).where(SpeechTranscription.status.in_(ACTIVE))
                )
            ).all()
        for row in rows:
            await self._enqueue(row)
        return len(rows)

    async def _enqueue(self, row: SpeechTranscription) -> None:
        await self._jobs.enqueue(
            TRANSCRIBE_TASK, {"transcription_id": row.id}, org_id=row.org_id, job_id=row.id
        )

    # -- the job ----------------------------------------------------------------------
    async def run_job(self, payload: dict[str, Any]) -> None:
        """The body of task :data:`TRANSCRIBE_TASK` (``services.job_table`` registers it)."""
        transcription_id = str(payload["transcription_id"])
        async with self._sessions() as session:
            row = await session.get(SpeechTranscription, transcription_id)
            if row is None or row.status not in ACTIVE or row.audio is None:
                return
            row.status, row.started_at = "running", utcnow()
            await session.commit()
            data, filename = row.audio, row.filename
            org_id, user_id, request_id = row.org_id, row.user_id, row.request_id
            options = TranscribeOptions(
                model=row.model,
                language=row.options.get("language"),
                prompt=row.options.get("prompt"),
            )
        started = time.perf_counter()
        call = self._holds.pop(transcription_id, None)
        try:
            prepared = await self._transcription.prepare(org_id, data, filename, options)
        except ApiError as exc:  # e.g. the org's key for the model was removed meanwhile
            if call is not None:
                call.release()
            await self._finish(transcription_id, error=(exc.code, exc.message))
            return
        if call is None:  # accepted before a restart or by another instance: its hold stays
            context = CallContext(org_id, user_id, TRANSCRIBE_ROUTE, request_id=request_id)
            call = MeteredCall(context=context, gate=self._gate, route=prepared.route, cap=None)
        try:
            transcript = await self._transcription.run(prepared, call, account_cancel=False)
        except ApiError as exc:
            await self._finish(transcription_id, error=(exc.code, exc.message))
            return
        except Exception as exc:
            logger.exception("transcription %s failed", transcription_id)
            failure = (error_code(exc), "the transcription failed")
            await self._finish(transcription_id, error=failure)
            return
        logger.info(
            "transcription %s done in %.1f s", transcription_id, time.perf_counter() - started
        )
        await self._finish(transcription_id, result=as_json(transcript, verbose=True))

    async def abandon_job(self, payload: dict[str, Any], reason: str) -> None:
        """The queue gave up (its workers kept dying): ``failed``, saying why."""
        transcription_id = str(payload["transcription_id"])
        if (call := self._holds.pop(transcription_id, None)) is not None:
            call.release()
        await self._finish(transcription_id, error=("job_abandoned", f"the transcription {reason}"))

    async def _finish(
        self,
        transcription_id: str,
        *,
        result: dict[str, Any] | None = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        """Store the outcome and drop the audio (one statement: never half-written)."""
        values: dict[str, Any] = {"audio": None, "finished_at": utcnow()}
        if error is None:
            values |= {"status": "done", "result": result}
        else:
            values |= {"status": "failed", "error_code": error[0], "error": error[1]}
        async with self._sessions() as session:
            await session.execute(
                update(SpeechTranscription)
                .where(SpeechTranscription.id == transcription_id)
                .values(**values)
            )
            await session.commit()


def stored_transcript(result: dict[str, Any]) -> Transcript:
    """The transcript a finished job stored (``speech.render.as_json``'s verbose shape)."""
    return Transcript(
        text=result["text"],
        language=result.get("language"),
        duration_s=float(result["duration_s"]),
        segments=tuple(
            Segment(float(s["start"]), float(s["end"]), s["text"])
            for s in result.get("segments") or ()
        ),
    )
