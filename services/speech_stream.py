"""Live transcription (``WS /api/speech/stream``): PCM in, partial transcripts out, a final.

The embedded Whisper model serves the stream. While audio arrives, every
:data:`PARTIAL_EVERY_SECONDS` of new audio a draft (greedy decoding) is sent as a partial.
A partial does not re-read the whole stream: it transcribes a window, the audio since the
last *stable* point, and prefixes the text already settled. Once the window is longer
than :data:`SETTLE_AFTER_SECONDS`, its segments that ended at least
:data:`TAIL_SECONDS` before the window's end are settled (their text kept, the window
moved past them); a window that never pauses is settled whole at
:data:`MAX_WINDOW_SECONDS` (Whisper's own window). So a partial costs at most
``MAX_WINDOW_SECONDS + PARTIAL_EVERY_SECONDS`` of audio, however long the session.
``end`` transcribes the whole stream once more, with beam search and segments: the final
is as good as an upload's.

Transcriptions run in worker threads, and the socket is not read meanwhile: a fast sender
is slowed by TCP back-pressure, not buffered without bound. The session is capped like an
upload (bytes, seconds). One usage event (route ``speech.stream``) is recorded when the
transcription ends, however it ends.

In chat mode (``{"type": "config", "mode": "chat", ...}``) the final transcript is also
the question of a spoken chat turn (``services.voice``); :class:`ChatMode` holds what the
client chose for it.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, get_args

from auth.tokens import Principal
from core.errors import ApiError
from core.patterns import THREAD_ID_PATTERN
from providers.speech.types import AudioFormat, Transcript
from services.metering import MeteredCall
from services.speech import SpeechService
from speech.decode import SAMPLE_RATE
from speech.pcm import PcmBuffer

STREAM_ROUTE = "speech.stream"
PARTIAL_EVERY_SECONDS = 2.0
SETTLE_AFTER_SECONDS = 8.0
"""A window longer than this settles its finished segments."""
TAIL_SECONDS = 1.5
"""Segments ending this close to the window's end may still change: they stay in it."""
MAX_WINDOW_SECONDS = 24.0
"""A window without a settled segment by then is settled whole."""
_THREAD_ID = re.compile(THREAD_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class ChatMode:
    """Chat mode's choices: the thread, and how the answer is spoken."""

    thread_id: str
    voice: str | None = None
    audio_format: AudioFormat = "pcm"
    speak: bool = True


class StreamSession:
    """One websocket's audio, transcripts and usage."""

    def __init__(self, speech: SpeechService, call: MeteredCall) -> None:
        self._speech = speech
        self._call = call
        self._buffer = PcmBuffer(SAMPLE_RATE)
        self._language: str | None = None
        self._partial_at = 0.0
        self._settled: list[str] = []
        self._window_at = 0.0
        """Where the partials' window starts (seconds of the stream)."""
        self._started = time.perf_counter()
        self._closed = False
        self.chat: ChatMode | None = None
        """Set by a ``config`` frame with ``"mode": "chat"``."""

    @classmethod
    async def open(cls, speech: SpeechService, principal: Principal) -> StreamSession:
        """Hold the caller's limits for a session (429 when over)."""
        return cls(speech, await speech.hold_stream(principal, STREAM_ROUTE))

    def configure(self, message: dict[str, Any]) -> None:
        """Apply a ``config`` frame (before any audio): sample rate, language, mode."""
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
        mode = message.get("mode", "transcribe")
        if mode not in ("transcribe", "chat"):
            raise ApiError(422, "invalid_request", "mode must be 'transcribe' or 'chat'")
        self.chat = _chat_mode(message) if mode == "chat" else None

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
        """The settled text, then a draft of the window since it."""
        end = self._partial_at = self._buffer.seconds
        start = self._window_at
        draft = await self._speech.transcribe_samples(
            self._buffer.samples(start), language=self._language, draft=True
        )
        window = end - start
        tail = draft.text
        if window > SETTLE_AFTER_SECONDS:
            done = [s for s in draft.segments if s.end <= window - TAIL_SECONDS]
            if window > MAX_WINDOW_SECONDS and not done:
                done = list(draft.segments)  # no pause to cut at: settle it all
                self._window_at = end
            elif done:
                self._window_at = start + done[-1].end
            if done:
                self._settled += [s.text for s in done if s.text]
                rest = draft.segments[len(done) :]
                tail = " ".join(s.text for s in rest if s.text)
        return " ".join([*self._settled, tail]).strip()

    async def final(self) -> Transcript:
        """The whole stream's transcript, with segments."""
        if not self._buffer.size:
            return Transcript(text="", language=self._language, duration_s=0.0)
        return await self._speech.transcribe_samples(
            self._buffer.samples(), language=self._language, draft=False
        )

    @property
    def language(self) -> str | None:
        """The language the client named, if any."""
        return self._language

    @property
    def seconds(self) -> float:
        """Audio received so far."""
        return self._buffer.seconds

    def close(self, error: str | None) -> None:
        """Record the transcription's usage event (once), with the seconds of audio received."""
        if not self._closed:
            self._closed = True
            self._call.record(self._started, error=error, audio_seconds=self._buffer.seconds)


def _chat_mode(message: dict[str, Any]) -> ChatMode:
    """Chat mode's fields of a ``config`` frame, or the 422 naming the bad one."""
    thread_id = message.get("thread_id") or f"voice-{uuid.uuid4().hex}"
    if not isinstance(thread_id, str) or not _THREAD_ID.match(thread_id):
        raise ApiError(422, "invalid_request", "thread_id must match " + THREAD_ID_PATTERN)
    voice = message.get("voice")
    if voice is not None and (not isinstance(voice, str) or not 0 < len(voice) <= 128):
        raise ApiError(422, "invalid_request", "voice must be a voice id (GET /api/speech/voices)")
    audio_format = message.get("format", "pcm")
    if audio_format not in get_args(AudioFormat):
        formats = ", ".join(get_args(AudioFormat))
        raise ApiError(422, "invalid_request", f"format must be one of {formats}")
    speak = message.get("speak", True)
    if not isinstance(speak, bool):
        raise ApiError(422, "invalid_request", "speak must be true or false")
    return ChatMode(thread_id=thread_id, voice=voice, audio_format=audio_format, speak=speak)
