"""Live transcription (``WS /api/speech/stream``): PCM in, partial transcripts out, a final.

The embedded Whisper model serves the stream. While audio arrives, every
:data:`PARTIAL_EVERY_SECONDS` of new audio the whole buffer so far is transcribed again as a
draft (greedy decoding) and sent as a partial: simple, but the work grows with the buffer
(bench/speech.py), so long sessions want windowed partials (a later step); ``end``
transcribes it once more in full, with segments. Transcriptions run in worker threads, and the
socket is not read meanwhile: a fast sender is slowed by TCP back-pressure, not buffered
without bound. The session is capped like an upload (bytes, seconds). One usage event
(route ``speech.stream``) is recorded when the session ends, however it ends.
"""

from __future__ import annotations

import time
from typing import Any

from auth.tokens import Principal
from core.errors import ApiError
from providers.speech.types import Transcript
from services.metering import MeteredCall
from services.speech import SpeechService
from speech.decode import SAMPLE_RATE
from speech.pcm import PcmBuffer

STREAM_ROUTE = "speech.stream"
PARTIAL_EVERY_SECONDS = 2.0


class StreamSession:
    """One websocket's audio, transcripts and usage."""

    def __init__(self, speech: SpeechService, call: MeteredCall) -> None:
        self._speech = speech
        self._call = call
        self._buffer = PcmBuffer(SAMPLE_RATE)
        self._language: str | None = None
        self._partial_at = 0.0
        self._started = time.perf_counter()
        self._closed = False

    @classmethod
    async def open(cls, speech: SpeechService, principal: Principal) -> StreamSession:
        """Hold the caller's limits for a session (429 when over)."""
        return cls(speech, await speech.hold_stream(principal, STREAM_ROUTE))

    def configure(self, message: dict[str, Any]) -> None:
        """Apply a ``config`` frame (before any audio): sample rate, language."""
        if self._buffer.size:
            raise ApiError(422, "invalid_request", "config must come before the audio")
        rate = message.get("sample_rate", SAMPLE_RATE)
        if not isinstance(rate, int) or isinstance(rate, bool):
            raise ApiError(422, "invalid_request", "sample_rate must be an integer (Hz)")
        try:
            self._buffer = PcmBuffer(rate)
        except ValueError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from exc
        language = message.get("language")
        if language is not None and (not isinstance(language, str) or len(language) > 16):
            raise ApiError(422, "invalid_request", "language must be an ISO 639-1 code")
        self._language = language or None

    def feed(self, frame: bytes) -> bool:
        """Buffer a binary frame of PCM16; whether a partial transcript is due."""
        self._buffer.append(frame)
        settings = self._speech.settings
        if self._buffer.size > settings.speech_max_file_bytes:
            raise ApiError(413, "audio_too_large", "the stream is over the upload size cap")
        if self._buffer.seconds > settings.speech_max_audio_seconds:
            cap = settings.speech_max_audio_seconds
            raise ApiError(413, "audio_too_long", f"the stream is over {cap:.0f} s of audio")
        return self._buffer.seconds - self._partial_at >= PARTIAL_EVERY_SECONDS

    async def partial(self) -> str:
        """The transcript of everything so far."""
        self._partial_at = self._buffer.seconds
        transcript = await self._transcribe(draft=True)
        return transcript.text

    async def final(self) -> Transcript:
        """The whole stream's transcript, with segments."""
        return await self._transcribe(draft=False)

    async def _transcribe(self, *, draft: bool) -> Transcript:
        if not self._buffer.size:
            return Transcript(text="", language=self._language, duration_s=0.0)
        return await self._speech.transcribe_samples(
            self._buffer.samples(), language=self._language, draft=draft
        )

    @property
    def seconds(self) -> float:
        """Audio received so far."""
        return self._buffer.seconds

    def close(self, error: str | None) -> None:
        """Record the session's usage event (once)."""
        if not self._closed:
            self._closed = True
            self._call.record(self._started, error=error)
