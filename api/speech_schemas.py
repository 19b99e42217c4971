"""Request and response bodies of the speech routes (the service's and OpenAI's shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SynthesizeRequest(BaseModel):
    """``POST /api/speech/synthesize``."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="What to say (at most AHC_SPEECH_MAX_TTS_CHARACTERS).")
    voice: str | None = Field(
        default=None, description="An ElevenLabs voice id or an OpenAI voice name."
    )
    model: str | None = Field(
        default=None,
        description="eleven_multilingual_v2, ... (ElevenLabs) or gpt-4o-mini-tts, tts-1 "
        "(OpenAI); default: ElevenLabs when keyed, else OpenAI.",
    )
    language: str | None = Field(
        default=None, max_length=16, description="ISO 639-1; default: `ko` for Hangul text."
    )
    format: Literal["mp3", "wav", "pcm", "opus"] = Field(
        default="mp3", description="pcm: 24 kHz signed 16-bit little-endian mono."
    )
    speed: float | None = Field(default=None, gt=0, le=4)
    stream: bool = Field(
        default=False, description="Send the audio chunked as the provider produces it."
    )


class OpenAISpeechRequest(BaseModel):
    """``POST /api/audio/speech``: OpenAI's request shape."""

    model: str
    input: str
    voice: str
    instructions: str | None = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float | None = Field(default=None, gt=0, le=4)
    stream_format: Literal["audio", "sse"] | None = None


class SegmentPublic(BaseModel):
    """A stretch of speech, times in seconds."""

    id: int
    start: float
    end: float
    text: str


class TranscriptionPublic(BaseModel):
    """``POST /api/speech/transcribe`` (json; verbose_json adds ``segments``)."""

    text: str
    language: str | None
    duration_s: float
    segments: list[SegmentPublic] | None = None


class VoicePublic(BaseModel):
    """A voice the organization can use."""

    id: str
    name: str
    provider: str
    languages: list[str]


class VoicesPublic(BaseModel):
    """``GET /api/speech/voices``."""

    data: list[VoicePublic]


class TranscriptionJobError(BaseModel):
    """Why a transcription job failed."""

    code: str
    message: str


class TranscriptionJobPublic(BaseModel):
    """A long transcription (``202`` of ``POST /api/speech/transcribe``, and its ``GET``).

    ``status``: ``queued`` → ``running`` → ``done`` (with the transcript: ``text``,
    ``language``, ``duration_s``, ``segments`` for verbose_json) or ``failed`` (``error``).
    """

    id: str
    status: Literal["queued", "running", "done", "failed"]
    filename: str
    model: str
    duration_s: float = Field(description="The audio's length in seconds.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: TranscriptionJobError | None = None
    text: str | None = None
    language: str | None = None
    segments: list[SegmentPublic] | None = None
