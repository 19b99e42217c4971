"""WAV headers written before the length was known, fixed once it is."""

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
