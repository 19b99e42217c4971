"""Synthesis: check the text, pick the voice's provider, stream its audio, meter the call.

ElevenLabs or OpenAI, with the org's own key first. Text over a provider's limit is split
on sentence boundaries; the pieces' audio is sent one after the other as it comes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from decimal import Decimal

from auth.tokens import Principal
from core.config import Settings
from core.errors import ApiError
from providers.registry import ModelRoute, Upstream
from providers.speech.elevenlabs_tts import ElevenLabsSpeech
from providers.speech.openai_audio import VOICES as OPENAI_VOICES
from providers.speech.openai_audio import OpenAIAudio
from providers.speech.piper_tts import PIPER_LANGUAGES, PIPER_VOICE, PiperSpeech
from providers.speech.types import (
    AUDIO_CONTENT_TYPES,
    PCM_SAMPLE_RATE,
    Synthesizer,
    TtsRequest,
    Voice,
)
from services.metering import MeteredCall
from services.speech.access import SpeechAccess, error_code
from services.speech.options import SYNTHESIZE_ROUTE, SpeechAudio, SynthesisOptions
from speech.language import text_language
from speech.pricing import SpeechPrices
from speech.text import split_for_synthesis
from speech.wav import wav_header

#: Who can speak when no provider is configured (the offline answer names them).
TTS_PROVIDERS = ("elevenlabs", "openai")
#: The model name of the offline English voice (the optional extra ``piper``).
PIPER_MODEL = "piper"
_SPEED_RANGES = {"openai": (0.25, 4.0), "elevenlabs": (0.7, 1.2), "piper": (0.5, 2.0)}


class Synthesis:
    """Text to speech, and the voices an org can use."""

    def __init__(
        self,
        settings: Settings,
        access: SpeechAccess,
        *,
        openai_audio: OpenAIAudio,
        elevenlabs: ElevenLabsSpeech,
        piper: PiperSpeech,
        prices: SpeechPrices,
    ) -> None:
        self.settings = settings
        self._access = access
        self._openai = openai_audio
        self._elevenlabs = elevenlabs
        self._piper = piper
        self._prices = prices

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
        model_route = await self._route(principal.org_id, options, language)
        provider, model = model_route.upstream.provider, model_route.name
        voice = self._voice(provider, options.voice)
        if options.speed is not None:
            low, high = _SPEED_RANGES[provider]
            if not low <= options.speed <= high:
                raise ApiError(
                    422, "invalid_request", f"{provider} speaks at speeds {low} to {high}"
                )
        sources: dict[str, Synthesizer] = {
            "elevenlabs": self._elevenlabs,
            "openai": self._openai,
            "piper": self._piper,
        }
        source = sources[provider]
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
        call = await self._access.hold(principal, route, model_route, cost, characters=len(text))
        started = time.perf_counter()
        chunks = _speak(source, requests, model_route.upstream, wav=options.format == "wav")
        try:
            first = await anext(chunks, b"")
        except BaseException as exc:
            call.record(started, error=error_code(exc))
            raise
        return SpeechAudio(
            content_type=AUDIO_CONTENT_TYPES[options.format],
            provider=provider,
            model=model,
            chunks=_relay(chunks, first, call, started, cost, len(text)),
        )

    async def _route(
        self, org_id: str, options: SynthesisOptions, language: str | None
    ) -> ModelRoute:
        """The synthesis model's route, or the 4xx saying who could speak it."""
        settings = self.settings
        eleven = await self._access.upstream(org_id, "elevenlabs")
        openai_upstream = await self._access.upstream(org_id, "openai")
        model = options.model
        if model is None:
            if eleven is not None:
                return ModelRoute(
                    settings.elevenlabs_models[0], settings.elevenlabs_models[0], eleven
                )
            if openai_upstream is not None:
                default = settings.speech_openai_tts_models[0]
                return ModelRoute(default, default, openai_upstream)
            if self._piper.available and language in (None, *PIPER_LANGUAGES):
                return ModelRoute(PIPER_MODEL, PIPER_MODEL, self._piper.upstream)
            raise _offline(language, piper=self._piper.available)
        if model == PIPER_MODEL:
            if not self._piper.available:
                raise ApiError(
                    422,
                    "provider_unavailable",
                    "the offline voice 'piper' is not installed (the optional extra `piper`)",
                    details={"providers": list(TTS_PROVIDERS)},
                )
            if language not in (None, *PIPER_LANGUAGES):
                raise _offline(language, piper=True)
            return ModelRoute(PIPER_MODEL, PIPER_MODEL, self._piper.upstream)
        if model in settings.elevenlabs_models:
            if eleven is None:
                raise _not_keyed("elevenlabs", model)
            return ModelRoute(model, model, eleven)
        if model in settings.speech_openai_tts_models:
            if openai_upstream is None:
                raise _not_keyed("openai", model)
            return ModelRoute(model, model, openai_upstream)
        known = ", ".join(
            [*settings.elevenlabs_models, *settings.speech_openai_tts_models, PIPER_MODEL]
        )
        raise ApiError(
            400, "unknown_model", f"unknown synthesis model '{model}'; known models: {known}"
        )

    def _voice(self, provider: str, voice: str | None) -> str:
        if provider == "elevenlabs":
            return voice or self.settings.elevenlabs_default_voice
        if provider == "piper":
            if voice not in (None, PIPER_VOICE):
                raise ApiError(
                    422, "unknown_voice", f"Piper has no voice '{voice}'; its voice: {PIPER_VOICE}"
                )
            return PIPER_VOICE
        voice = voice or self.settings.speech_openai_default_voice
        if voice not in OPENAI_VOICES:
            raise ApiError(
                422,
                "unknown_voice",
                f"OpenAI has no voice '{voice}'; its voices: {', '.join(OPENAI_VOICES)}",
            )
        return voice

    async def voices(self, principal: Principal) -> list[Voice]:
        """Every voice the org can use now: its ElevenLabs account's, OpenAI's, Piper's."""
        found: list[Voice] = []
        eleven = await self._access.upstream(principal.org_id, "elevenlabs")
        if eleven is not None:
            found += await self._elevenlabs.voices(eleven)
        if await self._access.upstream(principal.org_id, "openai") is not None:
            found += [Voice(id=v, name=v, provider="openai") for v in OPENAI_VOICES]
        return found + self._piper.voices()


async def _relay(
    chunks: AsyncGenerator[bytes, None],
    first: bytes,
    call: MeteredCall,
    started: float,
    cost: Decimal,
    characters: int,
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
        # the provider bills what it made, even for a listener who hung up
        call.record(started, cost=cost, error=error, characters=characters)


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


def _offline(language: str | None, *, piper: bool = False) -> ApiError:
    """No provider speaks it: say who could, never send unintelligible audio."""
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
    local = "the offline voice speaks only English" if piper else "no local voice is installed"
    return ApiError(
        422,
        "provider_unavailable",
        f"no speech synthesis provider is configured ({local}); "
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
