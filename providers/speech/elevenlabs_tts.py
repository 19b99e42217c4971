"""ElevenLabs text to speech and voices through the official ``elevenlabs`` SDK.

The speech service resolves the upstream: the base URL (configurable, so tests point it at
a fake) and the org's own ``elevenlabs`` key when it has one, else the service's. Audio is
requested from the stream endpoint, so chunks are passed on as ElevenLabs produces them.
The SDK is imported on first use (its models take ~0.3 s to import, paid by every start).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import httpx

from core.config import Settings
from core.errors import ApiError
from providers.errors import map_status, map_transport, parse_retry_after
from providers.registry import Upstream
from providers.speech.types import PCM_SAMPLE_RATE, TtsRequest, Voice

if TYPE_CHECKING:
    from elevenlabs import AsyncElevenLabs

PROVIDER = "elevenlabs"
_OUTPUT_FORMATS = {
    "mp3": "mp3_44100_128",
    "pcm": f"pcm_{PCM_SAMPLE_RATE}",
    "opus": "opus_48000_64",
}
_NO_LANGUAGE_CODE = frozenset({"eleven_multilingual_v2", "eleven_monolingual_v1"})
_MAX_CLIENTS = 64


class ElevenLabsSpeech:
    """Synthesizer and voice list over ElevenLabs."""

    provider = PROVIDER
    max_characters = 5_000  # per request; the multilingual v2 model takes 10,000

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: dict[str, AsyncElevenLabs] = {}

    def client(self, upstream: Upstream) -> AsyncElevenLabs:
        """The SDK client calling ``upstream`` (bounded cache)."""
        cache_key = f"{upstream.base_url}\x00{upstream.api_key}"
        client = self._clients.get(cache_key)
        if client is None:
            from elevenlabs import AsyncElevenLabs

            if len(self._clients) >= _MAX_CLIENTS:
                self._clients.pop(next(iter(self._clients)))
            client = AsyncElevenLabs(
                api_key=upstream.api_key,
                base_url=upstream.base_url,
                timeout=self._settings.upstream_timeout_seconds,
            )
            self._clients[cache_key] = client
        return client

    async def aclose(self) -> None:
        """Forget the clients (the SDK's httpx pools close with them)."""
        self._clients.clear()

    async def synthesize(
        self, request: TtsRequest, *, upstream: Upstream
    ) -> AsyncGenerator[bytes, None]:
        """Stream the audio of ``request`` as ElevenLabs produces it."""
        from elevenlabs import VoiceSettings
        from elevenlabs.core.api_error import ApiError as ElevenLabsApiError

        options: dict[str, Any] = {}
        if request.language and request.model not in _NO_LANGUAGE_CODE:
            options["language_code"] = request.language
        if request.speed is not None:
            options["voice_settings"] = VoiceSettings(speed=request.speed)
        try:
            chunks = self.client(upstream).text_to_speech.stream(
                request.voice,
                text=request.text,
                model_id=request.model,
                output_format=_OUTPUT_FORMATS[request.format],
                **options,
            )
            async for chunk in chunks:
                if chunk:
                    yield chunk
        except ElevenLabsApiError as exc:
            raise _map_error(exc, request.voice) from exc
        except httpx.HTTPError as exc:
            raise map_transport(PROVIDER, exc) from exc

    async def voices(self, upstream: Upstream) -> list[Voice]:
        """The voices the key's account may use (first page of up to 100)."""
        from elevenlabs.core.api_error import ApiError as ElevenLabsApiError

        try:
            answer = await self.client(upstream).voices.search(page_size=100)
        except ElevenLabsApiError as exc:
            raise _map_error(exc, None) from exc
        except httpx.HTTPError as exc:
            raise map_transport(PROVIDER, exc) from exc
        voices = []
        for voice in answer.voices:
            languages = {v.language for v in voice.verified_languages or () if v.language}
            if voice.labels and voice.labels.get("language"):
                languages.add(voice.labels["language"])
            voices.append(
                Voice(
                    id=voice.voice_id,
                    name=voice.name or voice.voice_id,
                    provider=PROVIDER,
                    languages=tuple(sorted(languages)),
                )
            )
        return voices


def _map_error(exc: Any, voice: str | None) -> ApiError:
    """ElevenLabs' answer → the service's error (an unknown voice is the client's 422)."""
    status = exc.status_code or 502
    message = _message(exc.body)
    if voice is not None and status in (400, 404) and "voice" in message.lower():
        return ApiError(422, "unknown_voice", f"ElevenLabs has no voice '{voice}': {message}")
    return map_status(PROVIDER, status, message, parse_retry_after(exc.headers or {}))


def _message(body: Any) -> str:
    """ElevenLabs' error text (``{"detail": {"message"}}`` or ``{"detail": "..."}``)."""
    if isinstance(body, dict):
        detail = body.get("detail", body)
        if isinstance(detail, dict):
            return str(detail.get("message") or detail.get("status") or detail)
        return str(detail)
    return str(body or "no details")[:200]
