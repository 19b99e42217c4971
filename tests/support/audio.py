"""Audio for the speech tests: the committed English clip, re-encoded with PyAV on demand."""

from __future__ import annotations

import functools
import io
import wave
from pathlib import Path

import av
import numpy as np

CLIP = Path(__file__).resolve().parent.parent / "data" / "speech" / "meeting_notes_en.wav"
CLIP_TEXT = "Please send the meeting notes to the whole team by Friday."
# container format, codec, sample rate of each upload kind the service recognises
ENCODINGS = {
    # MPEG-1 mp3 (32 kHz), as recorders write it; MPEG-2's 16 kHz mode at 64 kbit/s was
    # at the edge of what the int8 Whisper hears (words lost on an AMD EPYC).
    "mp3": ("mp3", "libmp3lame", 32_000),
    "m4a": ("mp4", "aac", 24_000),
    "ogg": ("ogg", "libopus", 48_000),
    "webm": ("webm", "libopus", 48_000),
    "flac": ("flac", "flac", 16_000),
}


def words(text: str) -> list[str]:
    """Lowercased words without punctuation, for comparing transcripts."""
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()


def word_errors(said: str, meant: str) -> int:
    """Word-level edit distance (substitutions + insertions + deletions) of two transcripts."""
    a, b = words(said), words(meant)
    row = list(range(len(b) + 1))
    for i, word in enumerate(a, start=1):
        previous, row[0] = row[0], i
        for j, other in enumerate(b, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1]


def clip_wav() -> bytes:
    """The committed clip (16 kHz mono PCM WAV)."""
    return CLIP.read_bytes()


def clip_pcm() -> bytes:
    """The clip's samples: the committed WAV is a 44-byte header, then 16 kHz PCM16 mono."""
    return clip_wav()[44:]


def pcm_frames(pcm: bytes, seconds: float = 0.5, rate: int = 16_000) -> list[bytes]:
    """``pcm`` (PCM16 mono) cut into frames of ``seconds``, as a live client sends it."""
    size = int(rate * seconds) * 2
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def pcm_wav(samples: np.ndarray, rate: int = 16_000) -> bytes:
    """A 16-bit mono WAV of float samples in [-1, 1]."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def silence_wav(seconds: float) -> bytes:
    """Digital silence."""
    return pcm_wav(np.zeros(int(seconds * 16_000), dtype=np.float32))


@functools.cache
def encoded_clip(kind: str) -> bytes:
    """The clip re-encoded as ``kind`` (mp3, m4a, ogg, webm, flac)."""
    container_format, codec, rate = ENCODINGS[kind]
    source = av.open(io.BytesIO(clip_wav()))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as target:
        stream = target.add_stream(codec, rate=rate, layout="mono")  # type: ignore[call-overload]
        stream.bit_rate = 64_000  # the encoders' defaults at 16 kHz mono are barely intelligible
        resampler = av.AudioResampler(format=stream.codec_context.format, layout="mono", rate=rate)
        frames = [f for frame in source.decode(audio=0) for f in resampler.resample(frame)]
        frames += resampler.resample(None)
        fifo = av.AudioFifo()
        for frame in frames:
            frame.pts = None
            fifo.write(frame)
        size = stream.codec_context.frame_size or 1024
        while fifo.samples:
            chunk = fifo.read(min(size, fifo.samples)) if fifo.samples < size else fifo.read(size)
            for packet in stream.encode(chunk):
                target.mux(packet)
        for packet in stream.encode(None):
            target.mux(packet)
    source.close()
    return buffer.getvalue()


def clip_samples() -> np.ndarray:
    """The committed clip as float samples (16 kHz mono)."""
    with wave.open(io.BytesIO(clip_wav())) as source:
        pcm = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768


def long_clip(repeats: int, pause_s: float) -> tuple[bytes, list[tuple[float, float]]]:
    """The clip ``repeats`` times with ``pause_s`` of silence after each (a WAV), and where
    each pause lies (start, end seconds): the only places a cut may fall."""
    clip = clip_samples()
    pause = np.zeros(int(pause_s * 16_000), dtype=np.float32)
    seconds = len(clip) / 16_000
    pauses = [
        (i * (seconds + pause_s) + seconds, (i + 1) * (seconds + pause_s)) for i in range(repeats)
    ]
    return pcm_wav(np.concatenate([np.concatenate([clip, pause])] * repeats)), pauses


def word_error_rate(heard: str, said: str) -> float:
    """Word-level edit distance of ``heard`` from ``said``, over the words said."""
    hyp, ref = words(heard), words(said)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1] / max(len(ref), 1)
