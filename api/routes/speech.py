"""Speech over HTTP: the service's routes and OpenAI's audio routes, one use case behind both.

``/api/speech/*`` answers the service's shapes; ``/api/audio/*`` takes OpenAI's request
shapes, so the ``openai`` SDK works against ``base_url=<service>/api``. Routes only
translate HTTP to ``services.speech`` and back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Path, Query, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from api.deps import ServicesDep
from api.routes import speech_stream
from api.speech_schemas import (
    OpenAISpeechRequest,
    SegmentPublic,
    SynthesizeRequest,
    TranscriptionJobError,
    TranscriptionJobPublic,
    TranscriptionPublic,
    VoicePublic,
    VoicesPublic,
)
from auth.deps import CurrentPrincipal
from core.errors import ApiError
from db.models import SpeechTranscription
from providers.speech.types import AUDIO_CONTENT_TYPES
from services.speech import (
    TRANSLATE_ROUTE,
    SpeechAudio,
    SynthesisOptions,
    TranscribeOptions,
    stored_transcript,
)
from speech.render import MEDIA_TYPES, ResponseFormat, as_json, as_openai, as_subtitles
from speech.wav import fix_wav_sizes

router = APIRouter(tags=["speech"])
router.include_router(speech_stream.router)  # WS /speech/stream

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Unknown model"},
    401: {"description": "Missing or invalid token"},
    413: {"description": "File or text over the cap, audio over the duration cap"},
    415: {"description": "Not audio, or an unsupported codec"},
    422: {"description": "Corrupt or empty audio; no provider for the request"},
    429: {"description": "Limit exceeded, or the provider is rate limiting"},
    502: {"description": "Provider failure"},
}
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

FileField = Annotated[UploadFile, File(description="The audio (wav, mp3, m4a, ogg, webm, flac).")]
LanguageField = Annotated[str | None, Form(max_length=16, description="ISO 639-1, e.g. ko")]
PromptField = Annotated[str | None, Form(max_length=2000)]
FormatField = Annotated[ResponseFormat, Form()]


async def _read(services: ServicesDep, upload: UploadFile) -> tuple[bytes, str]:
    """At most one byte over the cap (enough to answer 413), and the file's name."""
    data = await upload.read(services.settings.speech_max_file_bytes + 1)
    await upload.close()
    return data, upload.filename or "audio"


@router.post(
    "/speech/transcribe",
    operation_id="speech-transcribe",
    response_model=TranscriptionPublic,
    response_model_exclude_none=True,
    responses={
        **_ERRORS,
        202: {
            "model": TranscriptionJobPublic,
            "description": "Long audio: accepted as a job; poll the Location",
        },
    },
)
async def transcribe(
    principal: CurrentPrincipal,
    services: ServicesDep,
    file: FileField,
    language: LanguageField = None,
    prompt: PromptField = None,
    model: Annotated[str | None, Form(max_length=100)] = None,
    response_format: FormatField = "json",
) -> Response:
    """Audio → ``{text, language, duration_s, segments?}`` (or text, srt, vtt).

    Audio longer than ``AHC_SPEECH_SYNC_MAX_SECONDS`` is transcribed as a job: ``202`` with
    ``Location: /api/speech/transcriptions/{id}`` to poll.
    """
    data, filename = await _read(services, file)
    outcome = await services.speech.submit(
        principal,
        data,
        filename,
        TranscribeOptions(model, language, prompt),
        response_format=response_format,
    )
    if isinstance(outcome, SpeechTranscription):
        return JSONResponse(
            _job_public(outcome, verbose=False).model_dump(mode="json", exclude_none=True),
            status_code=202,
            headers={"Location": transcription_location(outcome.id)},
        )
    return _answer(outcome, response_format, as_json)


def transcription_location(transcription_id: str) -> str:
    """Where a transcription job is polled."""
    return f"/api/speech/transcriptions/{transcription_id}"


def _job_public(row: SpeechTranscription, *, verbose: bool) -> TranscriptionJobPublic:
    job = TranscriptionJobPublic(
        id=row.id,
        status=row.status,
        filename=row.filename,
        model=row.model,
        duration_s=row.duration_s,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=TranscriptionJobError(code=row.error_code or "failed", message=row.error or "")
        if row.status == "failed"
        else None,
    )
    if row.status == "done" and row.result is not None:
        body = as_json(stored_transcript(row.result), verbose=verbose)
        job.text, job.language = body["text"], body["language"]
        if verbose:
            job.segments = [SegmentPublic(**s) for s in body["segments"]]
    return job


@router.get(
    "/speech/transcriptions/{transcription_id}",
    operation_id="speech-transcription-get",
    response_model=TranscriptionJobPublic,
    response_model_exclude_none=True,
    responses={
        200: {
            "content": {"text/plain": {}, "application/x-subrip": {}, "text/vtt": {}},
            "description": "The job's state; when done, the transcript in response_format",
        },
        404: {"description": "No such transcription of the caller's"},
    },
)
async def get_transcription(
    transcription_id: Annotated[str, Path(max_length=36)],
    principal: CurrentPrincipal,
    services: ServicesDep,
    response_format: Annotated[
        ResponseFormat | None, Query(description="Default: the one the upload asked for.")
    ] = None,
) -> Response:
    """A long transcription's state; once done, its transcript in ``response_format``."""
    row = await services.speech.transcription_job(principal, transcription_id)
    kind = response_format or row.options.get("response_format") or "json"
    if row.status == "done" and row.result is not None and kind not in ("json", "verbose_json"):
        return _answer(stored_transcript(row.result), kind, as_json)
    headers = {} if row.status in ("done", "failed") else {"Retry-After": "2"}
    job = _job_public(row, verbose=kind == "verbose_json")
    return JSONResponse(job.model_dump(mode="json", exclude_none=True), headers=headers)


@router.post("/audio/transcriptions", operation_id="audio-transcriptions", responses=_ERRORS)
async def openai_transcriptions(
    principal: CurrentPrincipal,
    services: ServicesDep,
    file: FileField,
    model: Annotated[str, Form(max_length=100)],
    language: LanguageField = None,
    prompt: PromptField = None,
    response_format: FormatField = "json",
) -> Response:
    """OpenAI's ``audio.transcriptions.create`` (``temperature`` and the like are ignored)."""
    data, filename = await _read(services, file)
    transcript = await services.speech.transcribe(
        principal, data, filename, TranscribeOptions(model, language, prompt)
    )
    return _answer(transcript, response_format, as_openai)


@router.post("/audio/translations", operation_id="audio-translations", responses=_ERRORS)
async def openai_translations(
    principal: CurrentPrincipal,
    services: ServicesDep,
    file: FileField,
    model: Annotated[str, Form(max_length=100)],
    prompt: PromptField = None,
    response_format: FormatField = "json",
) -> Response:
    """OpenAI's ``audio.translations.create``: the speech as English text."""
    data, filename = await _read(services, file)
    options = TranscribeOptions(model, None, prompt, task="translate")
    transcript = await services.speech.transcribe(
        principal, data, filename, options, route=TRANSLATE_ROUTE
    )
    return _answer(transcript, response_format, _as_openai_translation)


def _as_openai_translation(transcript: Any, *, verbose: bool) -> dict[str, Any]:
    """OpenAI's translation body (its verbose form names the task)."""
    body = as_openai(transcript, verbose=verbose)
    if "task" in body:
        body["task"] = "translate"
    return body


def _answer(
    transcript: Any, response_format: str, as_body: Callable[..., dict[str, Any]]
) -> Response:
    """The transcript in ``response_format``: JSON through ``as_body``, else text or subtitles."""
    if response_format in ("json", "verbose_json"):
        return JSONResponse(as_body(transcript, verbose=response_format == "verbose_json"))
    if response_format == "text":
        return PlainTextResponse(transcript.text)
    kind: Literal["srt", "vtt"] = "srt" if response_format == "srt" else "vtt"
    return Response(as_subtitles(transcript, kind), media_type=MEDIA_TYPES[kind])


@router.post(
    "/speech/synthesize",
    operation_id="speech-synthesize",
    responses={**_ERRORS, 200: {"content": {"audio/mpeg": {}}, "description": "The audio"}},
)
async def synthesize(
    body: SynthesizeRequest, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """Text → audio bytes; with ``stream: true`` sent as the provider produces them."""
    audio = await services.speech.synthesize(
        principal,
        SynthesisOptions(
            text=body.text,
            voice=body.voice,
            model=body.model,
            language=body.language,
            format=body.format,
            speed=body.speed,
        ),
    )
    return await _audio_answer(audio, stream=body.stream)


@router.post(
    "/audio/speech",
    operation_id="audio-speech",
    responses={**_ERRORS, 200: {"content": {"audio/mpeg": {}}, "description": "The audio"}},
)
async def openai_speech(
    body: OpenAISpeechRequest, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """OpenAI's ``audio.speech.create``: always streamed (chunked) like OpenAI's."""
    if body.response_format in ("aac", "flac"):
        raise ApiError(
            422,
            "unsupported_format",
            f"'{body.response_format}' is not offered: mp3, opus, wav, pcm",
        )
    if body.stream_format == "sse":
        raise ApiError(422, "unsupported_format", "stream_format 'sse' is not offered: audio")
    audio = await services.speech.synthesize(
        principal,
        SynthesisOptions(
            text=body.input,
            voice=body.voice,
            model=body.model,
            format=body.response_format,  # type: ignore[arg-type]
            speed=body.speed,
            instructions=body.instructions,
        ),
    )
    return await _audio_answer(audio, stream=True)


async def _audio_answer(audio: SpeechAudio, *, stream: bool) -> Response:
    if stream:
        return StreamingResponse(
            audio.chunks, media_type=audio.content_type, headers=_STREAM_HEADERS
        )
    content = b"".join([chunk async for chunk in audio.chunks])
    if audio.content_type == AUDIO_CONTENT_TYPES["wav"]:
        content = fix_wav_sizes(content)  # a streamed header said "until the end"
    return Response(content, media_type=audio.content_type)


@router.get(
    "/speech/voices", operation_id="speech-voices", response_model=VoicesPublic, responses=_ERRORS
)
async def voices(principal: CurrentPrincipal, services: ServicesDep) -> VoicesPublic:
    """The voices the organization can use now, with their provider and languages."""
    found = await services.speech.voices(principal)
    return VoicesPublic(
        data=[
            VoicePublic(id=v.id, name=v.name, provider=v.provider, languages=list(v.languages))
            for v in found
        ]
    )
