"""16-bit mono PCM resampled, or encoded as mp3 or Ogg/Opus with PyAV (no system ffmpeg).

What an in-process voice makes (Piper: 22,050 Hz PCM) → what clients are sent.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

# format → (container, codec, encoder sample rate)
_ENCODERS = {"mp3": ("mp3", "libmp3lame", 24_000), "opus": ("ogg", "libopus", 48_000)}


def resample_pcm(pcm: bytes, source_rate: int, target_rate: int) -> bytes:
    """Signed 16-bit mono PCM at ``target_rate`` (linear interpolation; enough for speech)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    if source_rate == target_rate or not len(samples):
        return pcm
    count = round(len(samples) * target_rate / source_rate)
    positions = np.arange(count) * (source_rate / target_rate)
    out = np.interp(positions, np.arange(len(samples)), samples)
    return np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes()


def encode_pcm(pcm: bytes, rate: int, kind: str) -> bytes:
    """The clip as ``kind`` (``mp3`` or ``opus``); blocking: call from a worker thread."""
    import av

    container_format, codec, codec_rate = _ENCODERS[kind]
    frame = av.AudioFrame.from_ndarray(
        np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = rate
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as target:
        stream: Any = target.add_stream(codec, rate=codec_rate, layout="mono")
        stream.bit_rate = 64_000
        resampler = av.AudioResampler(
            format=stream.codec_context.format, layout="mono", rate=codec_rate
        )
        fifo = av.AudioFifo()
        for part in [*resampler.resample(frame), *resampler.resample(None)]:
            part.pts = None
            fifo.write(part)
        size = stream.codec_context.frame_size or 1024
        while fifo.samples:
            chunk = fifo.read(min(size, fifo.samples))
            for packet in stream.encode(chunk):
                target.mux(packet)
        for packet in stream.encode(None):
            target.mux(packet)
    return buffer.getvalue()
