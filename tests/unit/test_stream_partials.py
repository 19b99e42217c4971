"""Live partials read a bounded window, not the whole stream, and lose no settled text.

The speech service here is a stand-in that reads the audio itself: each sample's value says
which sentence it belongs to, so its "transcript" of any window is exact and checkable.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import numpy as np

from providers.speech.types import Segment, Transcript
from services.speech import SpeechService
from services.speech_stream import (
    MAX_WINDOW_SECONDS,
    PARTIAL_EVERY_SECONDS,
    StreamSession,
)

RATE = 16_000


@dataclass
class SentenceReader:
    """Transcribes sentence-coded audio: sample value ``(k + 1) / 1000`` is sentence ``k``."""

    settings: Any = field(
        default_factory=lambda: SimpleNamespace(
            speech_max_file_bytes=10**9, speech_max_audio_seconds=3600
        )
    )
    windows: list[float] = field(default_factory=list)

    async def transcribe_samples(
        self, samples: Any, *, language: str | None, draft: bool = False
    ) -> Transcript:
        self.windows.append(len(samples) / RATE)
        codes = np.rint(samples * 1000).astype(int) - 1
        cuts = np.flatnonzero(np.diff(codes)) + 1
        segments = tuple(
            Segment(start=start / RATE, end=end / RATE, text=f"s{codes[start]}")
            for start, end in zip([0, *cuts], [*cuts, len(codes)], strict=True)
            if end > start
        )
        return Transcript(
            text=" ".join(s.text for s in segments),
            language="en",
            duration_s=len(samples) / RATE,
            segments=segments,
        )


def coded_pcm(seconds: float, sentence_seconds: float) -> bytes:
    """PCM16 where each ``sentence_seconds`` of audio carries its sentence's number."""
    t = np.arange(int(seconds * RATE)) / RATE
    codes = (t // sentence_seconds).astype(int) + 1
    return (codes * 32768 // 1000).astype("<i2").tobytes()


async def stream(reader: SentenceReader, pcm: bytes) -> list[str]:
    """Feed the audio in half-second frames; the partials sent."""
    held = SimpleNamespace(record=lambda *a, **k: None)
    session = StreamSession(cast(SpeechService, reader), cast(Any, held))
    partials = []
    step = RATE  # half a second of 16-bit samples
    for at in range(0, len(pcm), step):
        if session.feed(pcm[at : at + step]):
            partials.append(await session.partial())
    return partials


async def test_partials_transcribe_a_bounded_window_and_keep_every_sentence() -> None:
    reader = SentenceReader()
    partials = await stream(reader, coded_pcm(120, sentence_seconds=3))
    assert len(partials) == 60  # one every 2 s of audio
    assert max(reader.windows) <= MAX_WINDOW_SECONDS + PARTIAL_EVERY_SECONDS
    assert sum(reader.windows) < 120 * 12  # re-reading everything would be ~3,600 s
    assert partials[-1].split() == [f"s{k}" for k in range(40)]
    for earlier, later in itertools.pairwise(partials):
        assert later.split()[: len(earlier.split()) - 1] == earlier.split()[:-1]


async def test_speech_without_a_pause_is_settled_at_the_window_cap() -> None:
    reader = SentenceReader()
    partials = await stream(reader, coded_pcm(90, sentence_seconds=1000))
    assert len(partials) == 45
    assert max(reader.windows) <= MAX_WINDOW_SECONDS + PARTIAL_EVERY_SECONDS
    assert set(partials[-1].split()) == {"s0"}
