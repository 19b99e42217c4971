"""Speech use cases: transcribe an upload, synthesize a text, list voices.

Each call: validate the input (size, format, duration, text), resolve the model to a
:class:`~providers.registry.ModelRoute` (the provider's upstream with the org's own key
first, then the service's), hold the caller's limits and record one usage event through the
metering gate (route ``speech.transcribe`` or ``speech.synthesize``, priced by
:mod:`speech.pricing`: one request and its cost count against the limits), whether the call
succeeded or not. Providers run off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from accounting.events import CallContext
from auth.tokens import Principal
from core.config import Settings
from core.errors import ApiError
from core.request_id import current_request_id
from providers.registry import ModelRoute, Upstream
from providers.speech.elevenlabs_tts import ElevenLabsSpeech
from providers.speech.local_whisper import LocalWhisper
from providers.speech.openai_audio import VOICES as OPENAI_VOICES
from providers.speech.openai_audio import OpenAIAudio
from providers.speech.types import (
    AUDIO_CONTENT_TYPES,
    PCM_SAMPLE_RATE,
    AudioFormat,
    SttRequest,
    Synthesizer,
    Transcriber,
    Transcript,
    TtsRequest,
    Voice,
)
from services.metering import MeteredCall, MeteringGate
from speech.decode import SAMPLE_RATE, DecodedAudio, decode_audio
from speech.errors import AudioTooLarge
from speech.language import text_language
from speech.pricing import SpeechPrices
from speech.sniff import CONTENT_TYPES, EXTENSIONS
from speech.text import split_for_synthesis
from speech.wav import wav_header

TRANSCRIBE_ROUTE = "speech.transcribe"
TRANSLATE_ROUTE = "speech.translate"
SYNTHESIZE_ROUTE = "speech.synthesize"
#: Who can speak when no provider is configured (the offline answer names them).
TTS_PROVIDERS = ("elevenlabs", "openai")
_SPEED_RANGES = {"openai": (0.25, 4.0), "elevenlabs": (0.7, 1.2)}


@dataclass(frozen=True, slots=True)
class TranscribeOptions:
    """What a client may choose for a transcription."""

    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"


@dataclass(frozen=True, slots=True)
class SynthesisOptions:
    """What a client may choose for a synthesis."""

    text: str
    voice: str | None = None
    model: str | None = None
    language: str | None = None
    format: AudioFormat = "mp3"
    speed: float | None = None
    instructions: str | None = None


@dataclass(slots=True)
class SpeechAudio:
    """Synthesized audio on its way: the content type, and the chunks as they come."""

    content_type: str
    provider: str
    model: str
    chunks: AsyncIterator[bytes]


class SpeechService:
    """The speech module's entry point for the routes."""

    def __init__(
        self,
        settings: Settings,
        *,
        local: LocalWhisper,
        openai_audio: OpenAIAudio,
        elevenlabs: ElevenLabsSpeech,
        gate: MeteringGate,
    ) -> None:
        self.settings = settings
        self.local = local
        self._openai = openai_audio
        self._elevenlabs = elevenlabs
        self._gate = gate
        self._prices = SpeechPrices(settings.speech_prices)
        self._decodes = asyncio.Semaphore(settings.speech_concurrency)

    @classmethod
    def build(cls, settings: Settings, *, gate: MeteringGate) -> SpeechService:
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
        )

    async def aclose(self) -> None:
        """Close the providers' connection pools."""
        await self._openai.aclose()
        await self._elevenlabs.aclose()

    # -- routes -------------------------------------------------------------------------
    async def _upstream(self, org_id: str, provider: str) -> Upstream | None:
        """``provider``'s upstream with the org's own key, else the service's; None: no key."""
        settings = self.settings
        own = await self._gate.provider_key(org_id, provider)
        if provider == "openai":
            service = settings.openai_api_key
            base_url = settings.openai_base_url
        else:
            service, base_url = settings.elevenlabs_api_key, settings.elevenlabs_base_url
        key = own or (service.get_secret_value() if service is not None else None)
        if key is None:
            return None
        organization = settings.openai_organization if provider == "openai" and not own else None
        return Upstream(provider, base_url.rstrip("/"), key, organization)

    async def _hold(
        self, principal: Principal, flow: str, route: ModelRoute, cost: Decimal
    ) -> MeteredCall:
        context = CallContext.for_principal(principal, flow, request_id=current_request_id())
        return await self._gate.hold_priced(principal, context, route, lambda: cost)

    # -- transcription -----------------------------------------------------------------
    async def stt_models(self, org_id: str) -> list[str]:
        """The transcription models this org may name (the default first)."""
        names = [self.settings.speech_local_stt_model]
        if await self._upstream(org_id, "openai") is not None:
            names += self.settings.speech_openai_stt_models
        default = self.settings.speech_stt_default_model
        return [default, *(n for n in names if n != default)] if default in names else names

    async def _transcriber(self, org_id: str, model: str) -> tuple[Transcriber, ModelRoute]:
        if model == self.settings.speech_local_stt_model:
            return self.local, ModelRoute(model, model, self.local.upstream)
        if model in self.settings.speech_openai_stt_models:
            upstream = await self._upstream(org_id, "openai")
            if upstream is not None:
                return self._openai, ModelRoute(model, model, upstream)
        known = ", ".join(await self.stt_models(org_id))
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
        model = options.model or self.settings.speech_stt_default_model
        transcriber, model_route = await self._transcriber(principal.org_id, model)
        audio = await self.decode(data, filename)
        cost = self._prices.transcription(model, audio.duration_s)
        call = await self._hold(principal, route, model_route, cost)
        request = SttRequest(
            data=data,
            filename=_upload_name(filename, audio.container),
            content_type=CONTENT_TYPES[audio.container],
            samples=audio.samples,
            duration_s=audio.duration_s,
            model=model,
            language=options.language or None,
            prompt=options.prompt or None,
            task=options.task,
        )
        started = time.perf_counter()
        try:
            transcript = await transcriber.transcribe(request, upstream=model_route.upstream)
        except BaseException as exc:
            call.record(started, error=_code(exc))
            raise
        call.record(started, cost=cost)
        return transcript

    async def hold_stream(self, principal: Principal, flow: str) -> MeteredCall:
        """Hold a live transcription session (the embedded model: one request, free)."""
        model = self.settings.speech_local_stt_model
        route = ModelRoute(model, model, self.local.upstream)
        return await self._hold(principal, flow, route, Decimal(0))

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

    # -- synthesis ---------------------------------------------------------------------
    async def synthesize(
        self, principal: Principal, options: SynthesisOptions, *, route: str = SYNTHESIZE_ROUTE
    ) -> SpeechAudio:
        """Start a synthesis; the first chunk has arrived (or failed) when this returns."""
        text = options.text.strip()
        if not text:
            raise ApiError(422, "empty_text", "the text to speak is empty")
        cap = self.settings.speech_max_tts_characters
        if len(text) > cap:
            raise ApiError(
                413, "text_too_long", f"the text has {len(text)} characters; at most {cap}"
            )
        language = text_language(text, options.language)
        model_route = await self._synthesizer(principal.org_id, options, language)
        provider, model = model_route.upstream.provider, model_route.name
        voice = self._voice(provider, options.voice)
        if options.speed is not None:
            low, high = _SPEED_RANGES[provider]
            if not low <= options.speed <= high:
                raise ApiError(
                    422, "invalid_request", f"{provider} speaks at speeds {low} to {high}"
                )
        source: Synthesizer = self._elevenlabs if provider == "elevenlabs" else self._openai
        requests = [
            TtsRequest(
                text=piece,
                model=model,
                voice=voice,
                format="pcm" if options.format == "wav" else options.format,
                language=language,
                speed=options.speed,
                extra={"instructions": options.instructions} if options.instructions else {},
            )
            for piece in split_for_synthesis(text, source.max_characters)
        ]
        cost = self._prices.synthesis(model, len(text))
        call = await self._hold(principal, route, model_route, cost)
        started = time.perf_counter()
        chunks = _speak(source, requests, model_route.upstream, wav=options.format == "wav")
        try:
            first = await anext(chunks, b"")
        except BaseException as exc:
            call.record(started, error=_code(exc))
            raise
        return SpeechAudio(
            content_type=AUDIO_CONTENT_TYPES[options.format],
            provider=provider,
            model=model,
            chunks=self._relay(chunks, first, call, started, cost),
        )

    async def _relay(
        self,
        chunks: AsyncGenerator[bytes, None],
        first: bytes,
        call: MeteredCall,
        started: float,
        cost: Decimal,
    ) -> AsyncIterator[bytes]:
        """Pass the provider's chunks on; account the call when the stream ends either way."""
        error: str | None = "client_disconnected"
        try:
            if first:
                yield first
            async for chunk in chunks:
                yield chunk
            error = None
        except ApiError as exc:
            error = exc.code
            raise
        except Exception:
            error = "internal_error"
            raise
        finally:
            await chunks.aclose()
            call.record(started, cost=cost, error=error)  # the provider bills what it made

    async def _synthesizer(
        self, org_id: str, options: SynthesisOptions, language: str | None
    ) -> ModelRoute:
        """The synthesis model's route, or the 4xx saying who could speak it."""
        settings = self.settings
        eleven = await self._upstream(org_id, "elevenlabs")
        openai_upstream = await self._upstream(org_id, "openai")
        model = options.model
        if model is None:
            if eleven is not None:
                return ModelRoute(
                    settings.elevenlabs_models[0], settings.elevenlabs_models[0], eleven
                )
            if openai_upstream is not None:
                default = settings.speech_openai_tts_models[0]
                return ModelRoute(default, default, openai_upstream)
            raise _offline(language)
        if model in settings.elevenlabs_models:
            if eleven is None:
                raise _not_keyed("elevenlabs", model)
            return ModelRoute(model, model, eleven)
        if model in settings.speech_openai_tts_models:
            if openai_upstream is None:
                raise _not_keyed("openai", model)
            return ModelRoute(model, model, openai_upstream)
        known = ", ".join([*settings.elevenlabs_models, *settings.speech_openai_tts_models])
        raise ApiError(
            400, "unknown_model", f"unknown synthesis model '{model}'; known models: {known}"
        )

    def _voice(self, provider: str, voice: str | None) -> str:
        if provider == "elevenlabs":
            return voice or self.settings.elevenlabs_default_voice
        voice = voice or self.settings.speech_openai_default_voice
        if voice not in OPENAI_VOICES:
            raise ApiError(
                422,
                "unknown_voice",
                f"OpenAI has no voice '{voice}'; its voices: {', '.join(OPENAI_VOICES)}",
            )
        return voice

    async def voices(self, principal: Principal) -> list[Voice]:
        """Every voice the org can use now: its ElevenLabs account's, OpenAI's built-in ones."""
        found: list[Voice] = []
        eleven = await self._upstream(principal.org_id, "elevenlabs")
        if eleven is not None:
            found += await self._elevenlabs.voices(eleven)
        if await self._upstream(principal.org_id, "openai") is not None:
            found += [Voice(id=v, name=v, provider="openai") for v in OPENAI_VOICES]
        return found


async def _speak(
    source: Synthesizer, requests: list[TtsRequest], upstream: Upstream, *, wav: bool
) -> AsyncGenerator[bytes, None]:
    """The pieces' audio one after the other (WAV: one header over the PCM of them all)."""
    if wav:
        yield wav_header(PCM_SAMPLE_RATE)
    for request in requests:
        pieces = source.synthesize(request, upstream=upstream)
        try:
            async for chunk in pieces:
                yield chunk
        finally:
            await pieces.aclose()


def _upload_name(filename: str, container: str) -> str:
    """A name whose extension matches the bytes (remote providers go by the extension)."""
    stem = (filename or "audio").rsplit("/", 1)[-1].rsplit(".", 1)[0] or "audio"
    return f"{stem}.{EXTENSIONS[container]}"


def _code(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return "client_disconnected"
    return "internal_error"


def _offline(language: str | None) -> ApiError:
    """No synthesis provider is configured: say who could speak, never send bad audio."""
    how = (
        "configure ElevenLabs (AHC_ELEVENLABS_API_KEY or the org's `elevenlabs` key) "
        "or OpenAI (OPENAI_API_KEY or the org's `openai` key)"
    )
    details = {"providers": list(TTS_PROVIDERS)}
    if language is not None and language != "en":
        return ApiError(
            422,
            "language_unsupported",
            f"no offline voice speaks '{language}'; {', '.join(TTS_PROVIDERS)} can: {how}",
            details=details,
        )
    return ApiError(
        422,
        "provider_unavailable",
        "no speech synthesis provider is configured (no local voice is bundled); "
        f"{', '.join(TTS_PROVIDERS)} can: {how}",
        details=details,
    )


def _not_keyed(provider: str, model: str) -> ApiError:
    return ApiError(
        422,
        "provider_unavailable",
        f"'{model}' is served by {provider}, for which neither the organization nor the "
        "service has a key",
        details={"providers": [provider]},
    )
