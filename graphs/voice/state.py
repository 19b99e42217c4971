"""State of the voice graph: the question's audio (or text), the answer's text and audio."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator
from typing_extensions import TypedDict

from providers.speech.types import AudioFormat


class VoiceInput(BaseModel):
    """The graph's public input: base64 audio of the question (or its text), and how to answer.

    Validated here (not in a node) so a malformed input is LangServe's 422, not a failed run.
    """

    audio: str | None = Field(
        default=None,
        description="The spoken question: base64 of an audio file (wav, mp3, m4a, ogg, webm...).",
    )
    transcript: str | None = Field(
        default=None, description="The question as text instead of audio (skips transcription)."
    )
    language: str | None = Field(
        default=None, max_length=16, description="ISO 639-1 code of the question, e.g. 'ko'."
    )
    voice: str | None = Field(default=None, max_length=128, description="The answer's voice.")
    format: AudioFormat = Field(default="mp3", description="The answer's audio format.")
    speak: bool = Field(default=True, description="False: answer in text only.")

    @field_validator("audio")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("audio must be base64") from exc
        return value

    @model_validator(mode="after")
    def _question(self) -> VoiceInput:
        if not self.audio and not (self.transcript or "").strip():
            raise ValueError("give the question as 'audio' (base64) or as 'transcript'")
        return self


class VoiceOutput(TypedDict, total=False):
    """The graph's answer."""

    transcript: str
    """What was heard (or the given text)."""
    answer: str
    """The assistant's answer, also stored in the thread."""
    audio: str | None
    """The answer spoken, base64 (None with ``speak: false`` or when no voice could speak)."""
    audio_format: str | None
    """The audio's content type, e.g. ``audio/mpeg``."""
    audio_error: dict[str, Any] | None
    """Why there is no audio (``{"code", "message"}``), e.g. ``provider_unavailable``."""
    thread_id: str | None
    """The chat thread the turn went to (shared with ``/api/chat/completions``)."""


class VoiceState(TypedDict, total=False):
    """Everything a run carries; ``audio`` holds the question's audio, then the answer's."""

    audio: str | None
    transcript: str | None
    language: str | None
    voice: str | None
    format: AudioFormat
    speak: bool
    answer: str
    audio_format: str | None
    audio_error: dict[str, Any] | None
    thread_id: str | None
