"""Long audio in pieces a provider takes: cut in the silences, then stitched back in order.

Speech is found with the Silero VAD model shipped inside ``faster-whisper`` (ONNX, on the
CPU); the cuts go in the middle of the pauses between speech, each piece at most
``max_seconds`` long. Speech without a pause that long is cut hard at the limit. The
stitched transcript's segments are offset by their piece's start, so times are the file's.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from providers.speech.types import Segment, Transcript
from speech.decode import SAMPLE_RATE
from speech.wav import wav_header

_MIN_PAUSE_MS = 300  # a pause this long may take a cut


def speech_spans(samples: Any) -> list[tuple[int, int]]:
    """Where there is speech, in samples (blocking: call from a worker thread)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=_MIN_PAUSE_MS, speech_pad_ms=100)
    return [(s["start"], s["end"]) for s in get_speech_timestamps(samples, options)]


def plan_pieces(
    total: int, spans: Sequence[tuple[int, int]], max_samples: int
) -> list[tuple[int, int]]:
    """``[start, end)`` pieces covering ``total`` samples, each at most ``max_samples``.

    Cuts go in the middle of the pauses between ``spans`` (speech), as far along as the
    limit allows; where no pause fits, the piece is cut at the limit.
    """
    if total <= max_samples:
        return [(0, total)]
    pauses = [(a_end + b_start) // 2 for (_, a_end), (b_start, _) in itertools.pairwise(spans)]
    if spans:
        pauses = [spans[0][0] // 2, *pauses, (spans[-1][1] + total) // 2]
    pieces: list[tuple[int, int]] = []
    start = 0
    while total - start > max_samples:
        fitting = [p for p in pauses if start < p <= start + max_samples]
        end = fitting[-1] if fitting else start + max_samples
        pieces.append((start, end))
        start = end
    pieces.append((start, total))
    return pieces


def wav_bytes(samples: Any) -> bytes:
    """16 kHz mono 16-bit WAV of float samples (what a piece is sent to a provider as)."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    return wav_header(SAMPLE_RATE, data_bytes=len(pcm)) + pcm


def stitch(pieces: Sequence[tuple[float, float, Transcript]], duration_s: float) -> Transcript:
    """One transcript of pieces ``(offset, length, transcript)`` (seconds) in order.

    A piece answered without segments (``gpt-4o-mini-transcribe``) becomes one segment
    spanning the piece, so the times still say where its text was spoken.
    """
    segments: list[Segment] = []
    for offset, length, transcript in pieces:
        own = transcript.segments or (
            (Segment(0.0, length, transcript.text.strip()),) if transcript.text.strip() else ()
        )
        segments += [
            Segment(round(s.start + offset, 3), round(s.end + offset, 3), s.text) for s in own
        ]
    texts = [t.text.strip() for _, _, t in pieces if t.text.strip()]
    languages = [t.language for _, _, t in pieces if t.language and t.text.strip()]
    return Transcript(
        text=" ".join(texts),
        language=languages[0] if languages else (pieces[0][2].language if pieces else None),
        duration_s=round(duration_s, 3),
        segments=tuple(segments),
    )
