"""What the voice graph needs from the speech module, as a port (graphs never import services).

The service builds a :class:`VoiceSpeech` per run from the run's config (who is calling and
the usage route are server-written ``configurable`` keys), so every speech call of a run is
metered for that caller like the REST routes' calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from langchain_core.runnables import RunnableConfig

from providers.speech.types import Transcript


class SpokenAudio(Protocol):
    """A synthesis on its way: its content type, then its chunks as the provider makes them."""

    content_type: str
    chunks: AsyncIterator[bytes]


class VoiceSpeech(Protocol):
    """Transcription and synthesis for one caller (errors are ``core.errors.ApiError``)."""

    async def transcribe(self, audio: bytes, *, language: str | None) -> Transcript:
        """The audio's transcript (any format the service decodes)."""
        ...

    async def synthesize(
        self, text: str, *, voice: str | None, language: str | None, audio_format: str
    ) -> SpokenAudio:
        """Start speaking ``text``; errors (no provider...) raise before the first chunk."""
        ...


SpeechFactory = Callable[[RunnableConfig], VoiceSpeech]
"""Builds the run's speech port from its config (server-written identity and route)."""
