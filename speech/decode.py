"""Audio bytes → 16 kHz mono float32 samples, with PyAV (FFmpeg's libraries in the wheel).

No system ffmpeg is needed; PyAV is imported with the first upload (not at start-up).
Decoding is CPU work: callers run :func:`decode_audio` in a worker thread. The duration
cap is checked against the container's header first (cheap) and again while decoding
(headers can lie), so a long file is refused without decoding it all.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from speech.errors import AudioTooLong, CorruptAudio, EmptyAudio, NotAudio, UnsupportedCodec
from speech.sniff import SUPPORTED, sniff_audio

if TYPE_CHECKING:
    import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """What Whisper reads: mono float32 samples at 16 kHz, and where they came from."""

    samples: Any  # numpy.ndarray, float32, shape (n,)
    container: str
    codec: str

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / SAMPLE_RATE


def decode_audio(data: bytes, *, filename: str, max_seconds: float) -> DecodedAudio:
    """Decode ``data``, or raise the :class:`~speech.errors.AudioError` that says why not."""
    import av  # FFmpeg's libraries: loaded with the first upload, not with the service

    if not data:
        raise EmptyAudio(filename, "the file is empty")
    container_kind = sniff_audio(data[:16])
    if container_kind is None:
        raise NotAudio(filename, f"not a supported audio file (supported: {SUPPORTED})")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.FFmpegError as exc:
        raise CorruptAudio(filename, f"unreadable {container_kind} audio ({exc})") from exc
    with container:
        if not container.streams.audio:
            raise NotAudio(filename, f"the {container_kind} file holds no audio stream")
        stream = container.streams.audio[0]
        codec = stream.codec_context.name if stream.codec_context is not None else ""
        if not codec or stream.codec_context is None:
            raise UnsupportedCodec(filename, "its audio codec cannot be decoded")
        declared = float(container.duration) / av.time_base if container.duration else 0.0
        if declared > max_seconds * 1.05 + 1:  # clearly too long (headers may estimate)
            raise AudioTooLong(filename, _too_long(declared, max_seconds))
        samples = _decode(container, stream, filename, codec, max_seconds)
    if samples.size == 0:
        raise EmptyAudio(filename, f"the {container_kind} file holds no audio samples")
    return DecodedAudio(samples=samples, container=container_kind, codec=codec)


def _decode(
    container: Any, stream: Any, filename: str, codec: str, max_seconds: float
) -> np.ndarray:
    """All samples, resampled to mono 16 kHz; stops as soon as the cap is passed."""
    import av
    import numpy as np

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    limit = int(max_seconds * SAMPLE_RATE) + SAMPLE_RATE // 100  # 10 ms of resampler slack
    parts: list[np.ndarray] = []
    total = 0
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                part = out.to_ndarray().reshape(-1)
                parts.append(part)
                total += part.size
            if total > limit:
                raise AudioTooLong(filename, _too_long(total / SAMPLE_RATE, max_seconds))
        for out in resampler.resample(None):
            parts.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        if not parts:
            if "decoder" in str(exc).lower() or "codec" in str(exc).lower():
                raise UnsupportedCodec(filename, f"cannot decode {codec} audio ({exc})") from exc
            raise CorruptAudio(filename, f"the {codec} audio is corrupt ({exc})") from exc
        # A truncated tail (an upload cut short): keep what decoded, like most players do.
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def _too_long(seconds: float, cap: float) -> str:
    return f"the audio lasts {seconds:.0f} s; at most {cap:.0f} s are accepted"
