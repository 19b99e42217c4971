"""OpenAI's audio endpoints (transcriptions, speech) through the official ``openai`` SDK.

The speech service resolves the upstream like a chat route (base URL and organization from
the settings; the org's own key when it has one, else the service's); timeout and retries
come from the settings. Clients are kept per upstream (bounded) and closed with the
service. SDK failures become the service's errors naming the provider.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import openai

from core.config import Settings
from providers.errors import map_openai_error
from providers.registry import Upstream
from providers.speech.types import Segment, SttRequest, Transcript, TtsRequest

PROVIDER = "openai"
#: The voices OpenAI's speech models speak with.
VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)
_VERBOSE = frozenset({"whisper-1"})  # models that answer verbose_json (segments, language)
_MAX_CLIENTS = 64


class OpenAIAudio:
    """Transcriber and synthesizer over OpenAI's audio API."""

    provider = PROVIDER
    max_characters = 4_096  # per speech request

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: dict[str, openai.AsyncOpenAI] = {}

    def client(self, upstream: Upstream) -> openai.AsyncOpenAI:
        """The SDK client calling ``upstream`` (its base URL, key and organization)."""
        cache_key = f"{upstream.base_url}\x00{upstream.api_key}\x00{upstream.organization}"
        client = self._clients.get(cache_key)
        if client is None:
            if len(self._clients) >= _MAX_CLIENTS:
                self._clients.pop(next(iter(self._clients)))  # closed by its finalizer
            client = openai.AsyncOpenAI(
                api_key=upstream.api_key,
                base_url=upstream.base_url,
                organization=upstream.organization,
                timeout=self._settings.upstream_timeout_seconds,
                max_retries=self._settings.upstream_max_retries,
            )
            self._clients[cache_key] = client
        return client

    async def aclose(self) -> None:
        """Close every client's connection pool."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    async def transcribe(self, request: SttRequest, *, upstream: Upstream) -> Transcript:
        """One transcription call; ``whisper-1`` answers segments and the language too."""
        verbose = request.model in _VERBOSE
        options: dict[str, Any] = {"response_format": "verbose_json" if verbose else "json"}
        if request.prompt:
            options["prompt"] = request.prompt
        audio = self.client(upstream).audio
        file = (request.filename, request.data, request.content_type)
        try:
            if request.task == "translate":  # whisper-1 only; the SDK marks it deprecated
                answer: Any = await audio.translations.create(
                    file=file, model=request.model, **options
                )
            else:
                if request.language:
                    options["language"] = request.language
                answer = await audio.transcriptions.create(
                    file=file, model=request.model, **options
                )
        except openai.OpenAIError as exc:
            raise map_openai_error(PROVIDER, exc) from exc
        segments = tuple(
            Segment(start=float(s.start), end=float(s.end), text=str(s.text).strip())
            for s in (getattr(answer, "segments", None) or ())
        )
        language = "en" if request.task == "translate" else None
        language = language or getattr(answer, "language", None) or request.language
        return Transcript(
            text=str(answer.text).strip(),
            language=_language_code(language),
            duration_s=round(float(getattr(answer, "duration", None) or request.duration_s), 3),
            segments=segments,
        )

    async def synthesize(
        self, request: TtsRequest, *, upstream: Upstream
    ) -> AsyncGenerator[bytes, None]:
        """The audio as OpenAI streams it (chunked, first bytes before the clip is done)."""
        options: dict[str, Any] = {}
        if request.speed is not None:
            options["speed"] = request.speed
        if instructions := request.extra.get("instructions"):
            options["instructions"] = instructions
        speech = self.client(upstream).audio.speech.with_streaming_response
        try:
            async with speech.create(
                model=request.model,
                voice=request.voice,
                input=request.text,
                response_format=request.format,
                **options,
            ) as response:
                async for chunk in response.iter_bytes():
                    if chunk:
                        yield chunk
        except openai.OpenAIError as exc:
            raise map_openai_error(PROVIDER, exc) from exc


_LANGUAGE_CODES = {"english": "en", "korean": "ko", "japanese": "ja", "chinese": "zh"}


def _language_code(language: str | None) -> str | None:
    """OpenAI names languages ("english"); the API answers ISO 639-1 codes like Whisper."""
    if language is None:
        return None
    return _LANGUAGE_CODES.get(language.lower(), language.lower())
