"""WAV around raw PCM: a header written before the length is known, fixed once it is."""

from __future__ import annotations

import struct


def fix_wav_sizes(data: bytes) -> bytes:
    """``data`` with its RIFF and ``data`` chunk sizes set to the real ones (PCM WAV only)."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[36:40] != b"data":
        return data
    return b"".join(
        (
            data[:4],
            struct.pack("<I", len(data) - 8),
            data[8:40],
            struct.pack("<I", len(data) - 44),
            data[44:],
        )
    )


def wav_header(sample_rate: int, *, data_bytes: int = 0xFFFFFFFF - 36) -> bytes:
    """A 16-bit mono PCM WAV header; the default length means "until the stream ends"."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        min(36 + data_bytes, 0xFFFFFFFF),
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        data_bytes,
    )
