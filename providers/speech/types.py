"""What every speech provider takes and gives, independent of any provider's SDK."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from providers.registry import Upstream

AudioFormat = Literal["mp3", "wav", "pcm", "opus"]
ProviderFormat = Literal["mp3", "pcm", "opus"]
"""What providers are asked for: ``wav`` is PCM behind the service's own header."""

#: Content type of each synthesis format (pcm: 24 kHz signed 16-bit little-endian mono).
AUDIO_CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "opus": "audio/ogg",
}
PCM_SAMPLE_RATE = 24_000


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of speech with its times in seconds from the start of the file."""

    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class Transcript:
    """A provider's transcription of one file."""

    text: str
    language: str | None
    duration_s: float
    segments: tuple[Segment, ...] = ()


@dataclass(frozen=True, slots=True)
class SttRequest:
    """One file to transcribe: its bytes, and the same audio decoded (16 kHz mono float32).

    Remote providers send ``data`` as uploaded; the embedded model reads ``samples``.
    """

    data: bytes
    filename: str
    content_type: str
    samples: Any  # numpy.ndarray of float32; Any keeps numpy out of the providers' API
    duration_s: float
    model: str
    language: str | None = None
    prompt: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    """``translate``: the text in English, whatever the spoken language."""
    draft: bool = False
    """A quick draft (a live stream's partial): cheaper decoding, may be less exact."""


@dataclass(frozen=True, slots=True)
class TtsRequest:
    """One text to speak, with provider-specific choices already resolved."""

    text: str
    model: str
    voice: str
    format: ProviderFormat
    language: str | None = None
    speed: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Voice:
    """A voice a client may name, with who serves it."""

    id: str
    name: str
    provider: str
    languages: tuple[str, ...] = ()


class Transcriber(Protocol):
    """Turns audio into text, calling ``upstream`` (with its key; unused in-process)."""

    provider: str

    async def transcribe(self, request: SttRequest, *, upstream: Upstream) -> Transcript:
        """Transcribe one file."""
        ...


class Synthesizer(Protocol):
    """Turns text into audio, chunk by chunk as the provider produces it."""

    provider: str
    max_characters: int

    def synthesize(self, request: TtsRequest, *, upstream: Upstream) -> AsyncGenerator[bytes, None]:
        """The audio of ``request`` in ``request.format``; errors are ``ApiError``."""
        ...
