"""Transcription: validate and decode an upload, pick the model's provider, meter the call.

The embedded model (``faster-whisper``) or OpenAI's, with the org's own key first. Decoding
and the local model run off the event loop, bounded.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from auth.tokens import Principal
from core.config import Settings
from core.errors import ApiError
from providers.registry import ModelRoute
from providers.speech.local_whisper import LocalWhisper
from providers.speech.openai_audio import OpenAIAudio
from providers.speech.types import SttRequest, Transcriber, Transcript
from services.metering import MeteredCall
from services.speech.access import SpeechAccess, error_code
from services.speech.options import TRANSCRIBE_ROUTE, TranscribeOptions
from services.speech.pieces import PieceTranscriber
from speech.decode import SAMPLE_RATE, DecodedAudio, decode_audio
from speech.errors import AudioTooLarge
from speech.pricing import SpeechPrices
from speech.sniff import CONTENT_TYPES, EXTENSIONS


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked, decoded transcription: who serves it, what is sent, what it costs."""

    transcriber: Transcriber
    route: ModelRoute
    request: SttRequest
    cost: Decimal


class Transcription:
    """Speech to text for uploads and live streams."""

    def __init__(
        self,
        settings: Settings,
        access: SpeechAccess,
        *,
        local: LocalWhisper,
        openai_audio: OpenAIAudio,
        prices: SpeechPrices,
    ) -> None:
        self.settings = settings
        self.local = local
        self._access = access
        self._openai = openai_audio
        self._prices = prices
        self._decodes = asyncio.Semaphore(settings.speech_concurrency)
        self._pieces = PieceTranscriber(settings)

    async def models(self, org_id: str) -> list[str]:
        """The transcription models this org may name (the default first)."""
        names = [self.settings.speech_local_stt_model]
        if await self._access.upstream(org_id, "openai") is not None:
            names += self.settings.speech_openai_stt_models
        default = self.settings.speech_stt_default_model
        return [default, *(n for n in names if n != default)] if default in names else names

    async def transcriber(self, org_id: str, model: str) -> tuple[Transcriber, ModelRoute]:
        """The provider serving ``model`` for the org, or the 400 naming the known models."""
        if model == self.settings.speech_local_stt_model:
            return self.local, ModelRoute(model, model, self.local.upstream)
        if model in self.settings.speech_openai_stt_models:
            upstream = await self._access.upstream(org_id, "openai")
            if upstream is not None:
                return self._openai, ModelRoute(model, model, upstream)
        known = ", ".join(await self.models(org_id))
        raise ApiError(
            400, "unknown_model", f"unknown transcription model '{model}'; known models: {known}"
        )

    async def decode(self, data: bytes, filename: str) -> DecodedAudio:
        """Check the size, then decode in a worker thread (bounded)."""
        cap = self.settings.speech_max_file_bytes
        if len(data) > cap:
            raise AudioTooLarge(filename, f"the file is larger than {cap} bytes")
        async with self._decodes:
            return await asyncio.to_thread(
                decode_audio,
                data,
                filename=filename,
                max_seconds=self.settings.speech_max_audio_seconds,
            )

    async def prepare(
        self, org_id: str, data: bytes, filename: str, options: TranscribeOptions
    ) -> Prepared:
        """Check the model, decode the audio: what one transcription will send, and its price."""
        model = options.model or self.settings.speech_stt_default_model
        transcriber, model_route = await self.transcriber(org_id, model)
        audio = await self.decode(data, filename)
        request = SttRequest(
            data=data,
            filename=upload_name(filename, audio.container),
            content_type=CONTENT_TYPES[audio.container],
            samples=audio.samples,
            duration_s=audio.duration_s,
            model=model,
            language=options.language or None,
            prompt=options.prompt or None,
            task=options.task,
        )
        cost = self._prices.transcription(model, audio.duration_s)
        return Prepared(transcriber, model_route, request, cost)

    async def hold(self, principal: Principal, prepared: Prepared, route: str) -> MeteredCall:
        """Reserve the transcription's seconds and cost on the caller's limits (429)."""
        return await self._access.hold(
            principal,
            route,
            prepared.route,
            prepared.cost,
            audio_seconds=prepared.request.duration_s,
        )

    async def run(
        self, prepared: Prepared, call: MeteredCall, *, account_cancel: bool = True
    ) -> Transcript:
        """Transcribe (in pieces when long) and record the call's one usage event.

        ``account_cancel=False`` (a job stopped by a shutdown, to run again after it): a
        cancelled call records nothing and its hold stays, so the job is accounted once.
        """
        started = time.perf_counter()
        try:
            transcript = await self._pieces.transcribe(
                prepared.transcriber, prepared.request, prepared.route.upstream
            )
        except asyncio.CancelledError:
            if account_cancel:
                call.record(started, error="client_disconnected")
            raise
        except BaseException as exc:
            call.record(started, error=error_code(exc))
            raise
        call.record(started, cost=prepared.cost, audio_seconds=prepared.request.duration_s)
        return transcript

    async def transcribe(
        self,
        principal: Principal,
        data: bytes,
        filename: str,
        options: TranscribeOptions,
        *,
        route: str = TRANSCRIBE_ROUTE,
    ) -> Transcript:
        """Transcribe one uploaded file (``data`` may be one byte over the cap: 413)."""
        prepared = await self.prepare(principal.org_id, data, filename, options)
        call = await self.hold(principal, prepared, route)
        return await self.run(prepared, call)

    async def hold_stream(self, principal: Principal, flow: str) -> MeteredCall:
        """Hold a live transcription session (the embedded model: one request, free)."""
        model = self.settings.speech_local_stt_model
        route = ModelRoute(model, model, self.local.upstream)
        return await self._access.hold(principal, flow, route, Decimal(0))

    async def transcribe_samples(
        self, samples: Any, *, language: str | None, draft: bool = False
    ) -> Transcript:
        """Transcribe 16 kHz float32 samples with the embedded model (a live stream's)."""
        request = SttRequest(
            data=b"",
            filename="stream.pcm",
            content_type="audio/pcm",
            samples=samples,
            duration_s=len(samples) / SAMPLE_RATE,
            model=self.settings.speech_local_stt_model,
            language=language,
            draft=draft,
        )
        return await self.local.transcribe(request, upstream=self.local.upstream)


def upload_name(filename: str, container: str) -> str:
    """A name whose extension matches the bytes (remote providers go by the extension)."""
    stem = (filename or "audio").rsplit("/", 1)[-1].rsplit(".", 1)[0] or "audio"
    return f"{stem}.{EXTENSIONS[container]}"
