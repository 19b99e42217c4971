"""Speech use cases: transcribe an upload, synthesize a text, list voices.

Each call: validate the input (size, format, duration, text), resolve the provider and its
key (the org's own key first, then the service's), hold the caller's limits, call the
provider off the event loop, and record one usage event (route ``speech.transcribe`` or
``speech.synthesize``; cost from :mod:`speech.pricing`) whether the call succeeded or not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

from accounting.accountant import Accountant
from accounting.events import CallContext, UsageRecord
from auth.tokens import Principal
from core.config import Settings
from core.errors import ApiError
from core.request_id import current_request_id
from limits.enforcer import LimitEnforcer
from providers.keys import ProviderKeyStore
from providers.speech.elevenlabs_tts import ElevenLabsSpeech
from providers.speech.local_whisper import LocalWhisper
from providers.speech.openai_audio import VOICES as OPENAI_VOICES
from providers.speech.openai_audio import OpenAIAudio
from providers.speech.types import (
    AUDIO_CONTENT_TYPES,
    AudioFormat,
    SttRequest,
    Transcriber,
    Transcript,
    TtsRequest,
    Voice,
)
from speech.decode import DecodedAudio, decode_audio
from speech.errors import AudioTooLarge
from speech.language import text_language
from speech.pricing import SpeechPrices
from speech.sniff import CONTENT_TYPES, EXTENSIONS

TRANSCRIBE_ROUTE = "speech.transcribe"
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
        provider_keys: ProviderKeyStore,
        limits: LimitEnforcer,
        accountant: Accountant,
    ) -> None:
        self.settings = settings
        self.local = local
        self._openai = openai_audio
        self._elevenlabs = elevenlabs
        self._keys = provider_keys
        self._limits = limits
        self._accountant = accountant
        self._prices = SpeechPrices(settings.speech_prices)
        self._decodes = asyncio.Semaphore(settings.speech_concurrency)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        provider_keys: ProviderKeyStore,
        limits: LimitEnforcer,
        accountant: Accountant,
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
            provider_keys=provider_keys,
            limits=limits,
            accountant=accountant,
        )

    async def aclose(self) -> None:
        """Close the providers' connection pools."""
        await self._openai.aclose()
        await self._elevenlabs.aclose()

    # -- keys --------------------------------------------------------------------------
    async def _key(self, org_id: str, provider: str) -> str | None:
        """The org's own key for ``provider``, else the service's, else None."""
        own = await self._keys.get(org_id, provider)
        if own:
            return own
        secret = (
            self.settings.openai_api_key
            if provider == "openai"
            else self.settings.elevenlabs_api_key
        )
        return secret.get_secret_value() if secret is not None else None

    def _context(self, principal: Principal, route: str) -> CallContext:
        return CallContext(
            org_id=principal.org_id,
            user_id=principal.user_id,
            route=route,
            request_id=current_request_id(),
        )

    # -- transcription -----------------------------------------------------------------
    async def stt_models(self, org_id: str) -> list[str]:
        """The transcription models this org may name (the default first)."""
        names = [self.settings.speech_local_stt_model]
        if await self._key(org_id, "openai") is not None:
            names += self.settings.speech_openai_stt_models
        default = self.settings.speech_stt_default_model
        return [default, *(n for n in names if n != default)] if default in names else names

    async def _transcriber(self, org_id: str, model: str) -> tuple[Transcriber, str | None]:
        if model == self.settings.speech_local_stt_model:
            return self.local, None
        if model in self.settings.speech_openai_stt_models:
            key = await self._key(org_id, "openai")
            if key is not None:
                return self._openai, key
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
        transcriber, key = await self._transcriber(principal.org_id, model)
        audio = await self.decode(data, filename)
        cost = self._prices.transcription(model, audio.duration_s)
        context = await self._limits.hold_tokens(
            principal, self._context(principal, route), lambda: (0, cost)
        )
        request = SttRequest(
            data=data,
            filename=_upload_name(filename, audio.container),
            content_type=CONTENT_TYPES[audio.container],
            samples=audio.samples,
            duration_s=audio.duration_s,
            model=model,
            language=options.language or None,
            prompt=options.prompt or None,
        )
        started = time.perf_counter()
        try:
            transcript = await transcriber.transcribe(request, api_key=key)
        except BaseException as exc:
            self._record(context, model, transcriber.provider, started, error=_code(exc))
            raise
        self._record(context, model, transcriber.provider, started, cost=cost)
        return transcript

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
        provider, model, key = await self._synthesizer(principal.org_id, options, language)
        voice = self._voice(provider, options.voice)
        if options.speed is not None:
            low, high = _SPEED_RANGES[provider]
            if not low <= options.speed <= high:
                raise ApiError(
                    422, "invalid_request", f"{provider} speaks at speeds {low} to {high}"
                )
        request = TtsRequest(
            text=text,
            model=model,
            voice=voice,
            format=options.format,
            language=language,
            speed=options.speed,
            extra={"instructions": options.instructions} if options.instructions else {},
        )
        cost = self._prices.synthesis(model, len(text))
        context = await self._limits.hold_tokens(
            principal, self._context(principal, route), lambda: (0, cost)
        )
        source = self._elevenlabs if provider == "elevenlabs" else self._openai
        started = time.perf_counter()
        chunks = source.synthesize(request, api_key=key)
        try:
            first = await anext(chunks, b"")
        except BaseException as exc:
            self._record(context, model, provider, started, error=_code(exc))
            raise
        return SpeechAudio(
            content_type=AUDIO_CONTENT_TYPES[options.format],
            provider=provider,
            model=model,
            chunks=self._relay(chunks, first, context, model, provider, started, cost),
        )

    async def _relay(
        self,
        chunks: AsyncGenerator[bytes, None],
        first: bytes,
        context: CallContext,
        model: str,
        provider: str,
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
            self._record(context, model, provider, started, cost=cost, error=error)

    async def _synthesizer(
        self, org_id: str, options: SynthesisOptions, language: str | None
    ) -> tuple[str, str, str]:
        """(provider, model, key) for a synthesis, or the 4xx saying who could speak it."""
        settings = self.settings
        eleven = await self._key(org_id, "elevenlabs")
        openai_key = await self._key(org_id, "openai")
        model = options.model
        if model is None:
            if eleven is not None:
                return "elevenlabs", settings.elevenlabs_models[0], eleven
            if openai_key is not None:
                return "openai", settings.speech_openai_tts_models[0], openai_key
            raise _offline(language)
        if model in settings.elevenlabs_models:
            if eleven is None:
                raise _not_keyed("elevenlabs", model)
            return "elevenlabs", model, eleven
        if model in settings.speech_openai_tts_models:
            if openai_key is None:
                raise _not_keyed("openai", model)
            return "openai", model, openai_key
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
        eleven = await self._key(principal.org_id, "elevenlabs")
        if eleven is not None:
            found += await self._elevenlabs.voices(eleven)
        if await self._key(principal.org_id, "openai") is not None:
            found += [Voice(id=v, name=v, provider="openai") for v in OPENAI_VOICES]
        return found

    # -- accounting --------------------------------------------------------------------
    def _record(
        self,
        context: CallContext,
        model: str,
        provider: str,
        started: float,
        *,
        cost: Decimal = Decimal(0),
        error: str | None = None,
    ) -> None:
        self._accountant.record(
            context,
            UsageRecord.of(
                context,
                model=model,
                provider=provider,
                cost_usd=cost,
                latency_ms=round((time.perf_counter() - started) * 1000),
                status="ok" if error is None else "error",
                error_code=error,
            ),
        )


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
