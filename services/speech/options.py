"""What a speech call may ask for, and what synthesis hands back (shared by the routes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from providers.speech.types import AudioFormat

TRANSCRIBE_ROUTE = "speech.transcribe"
TRANSLATE_ROUTE = "speech.translate"
SYNTHESIZE_ROUTE = "speech.synthesize"


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
