"""The speech module's entry point: transcription, synthesis, voices (one object per app).

Each call validates its input, resolves the model to a :class:`~providers.registry.ModelRoute`
(the provider's upstream with the org's own key first, then the service's), holds the
caller's limits and records one usage event through the metering gate, whether the call
succeeded or not. Providers run off the event loop.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth.tokens import Principal
from core.config import Settings
from db.models import SpeechTranscription
from jobs.queue import JobQueue
from providers.speech.elevenlabs_tts import ElevenLabsSpeech
from providers.speech.local_whisper import LocalWhisper
from providers.speech.openai_audio import OpenAIAudio
from providers.speech.piper_tts import PiperSpeech
from providers.speech.types import Transcript, Voice
from services.metering import MeteredCall, MeteringGate
from services.speech.access import SpeechAccess
from services.speech.options import (
    SYNTHESIZE_ROUTE,
    TRANSCRIBE_ROUTE,
    SpeechAudio,
    SynthesisOptions,
    TranscribeOptions,
)
from services.speech.synthesis import Synthesis
from services.speech.transcription import Transcription
from services.speech.transcription_jobs import TranscriptionJobs
from speech.decode import DecodedAudio
from speech.pricing import SpeechPrices


class SpeechService:
    """What the routes and the live stream call; the work is in its two halves."""

    def __init__(
        self,
        settings: Settings,
        *,
        local: LocalWhisper,
        openai_audio: OpenAIAudio,
        elevenlabs: ElevenLabsSpeech,
        gate: MeteringGate,
        sessions: async_sessionmaker[AsyncSession],
        jobs: JobQueue,
    ) -> None:
        self.settings = settings
        self.local = local
        self._openai = openai_audio
        self._elevenlabs = elevenlabs
        access = SpeechAccess(settings, gate)
        prices = SpeechPrices(
            settings.speech_prices,
            stt_models=[settings.speech_local_stt_model, *settings.speech_openai_stt_models],
        )
        self.prices = prices
        self.transcription = Transcription(
            settings, access, local=local, openai_audio=openai_audio, prices=prices
        )
        self.synthesis = Synthesis(
            settings,
            access,
            openai_audio=openai_audio,
            elevenlabs=elevenlabs,
            piper=PiperSpeech(enabled=settings.speech_piper_enabled),
            prices=prices,
        )
        self.transcription_jobs = TranscriptionJobs(
            settings, sessions=sessions, transcription=self.transcription, gate=gate, jobs=jobs
        )

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        gate: MeteringGate,
        sessions: async_sessionmaker[AsyncSession],
        jobs: JobQueue,
    ) -> SpeechService:
        """The service with its providers made from the settings (nothing loaded yet)."""
        local = LocalWhisper(
            cache_dir=settings.data_dir / "models",
            model_dir=settings.speech_local_model_dir,
            threads=settings.speech_local_threads,
            compute_type=settings.speech_local_compute_type,
            beam_size=settings.speech_local_beam_size,
            concurrency=settings.speech_concurrency,
        )
        return cls(
            settings,
            local=local,
            openai_audio=OpenAIAudio(settings),
            elevenlabs=ElevenLabsSpeech(settings),
            gate=gate,
            sessions=sessions,
            jobs=jobs,
        )

    async def aclose(self) -> None:
        """Close the providers' connection pools."""
        await self._openai.aclose()
        await self._elevenlabs.aclose()

    # -- transcription -----------------------------------------------------------------
    async def stt_models(self, org_id: str) -> list[str]:
        """The transcription models this org may name (the default first)."""
        return await self.transcription.models(org_id)

    async def decode(self, data: bytes, filename: str) -> DecodedAudio:
        """Check the size, then decode in a worker thread (bounded)."""
        return await self.transcription.decode(data, filename)

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
        return await self.transcription.transcribe(principal, data, filename, options, route=route)

    async def submit(
        self,
        principal: Principal,
        data: bytes,
        filename: str,
        options: TranscribeOptions,
        *,
        response_format: str = "json",
    ) -> Transcript | SpeechTranscription:
        """A short file's transcript at once; a long one's job (``speech_sync_max_seconds``)."""
        return await self.transcription_jobs.submit(
            principal, data, filename, options, response_format=response_format
        )

    async def transcription_job(
        self, principal: Principal, transcription_id: str
    ) -> SpeechTranscription:
        """A transcription job of the caller's (404 otherwise)."""
        return await self.transcription_jobs.get(principal, transcription_id)

    async def hold_stream(self, principal: Principal, flow: str) -> MeteredCall:
        """Hold a live transcription session (the embedded model: one request, free)."""
        return await self.transcription.hold_stream(principal, flow)

    async def transcribe_samples(
        self, samples: Any, *, language: str | None, draft: bool = False
    ) -> Transcript:
        """Transcribe 16 kHz float32 samples with the embedded model (a live stream's)."""
        return await self.transcription.transcribe_samples(samples, language=language, draft=draft)

    # -- synthesis ---------------------------------------------------------------------
    async def synthesize(
        self, principal: Principal, options: SynthesisOptions, *, route: str = SYNTHESIZE_ROUTE
    ) -> SpeechAudio:
        """Start a synthesis; the first chunk has arrived (or failed) when this returns."""
        return await self.synthesis.synthesize(principal, options, route=route)

    async def voices(self, principal: Principal) -> list[Voice]:
        """Every voice the org can use now: its ElevenLabs account's, OpenAI's built-in ones."""
        return await self.synthesis.voices(principal)
