"""Raw PCM16 audio arriving in pieces (the websocket): buffered, capped, resampled to 16 kHz."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from speech.decode import SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np

MIN_RATE, MAX_RATE = 8_000, 48_000


class PcmBuffer:
    """Little-endian signed 16-bit mono samples at ``rate`` Hz, appended frame by frame."""

    def __init__(self, rate: int = SAMPLE_RATE) -> None:
        if not MIN_RATE <= rate <= MAX_RATE:
            raise ValueError(f"sample_rate must be {MIN_RATE} to {MAX_RATE} Hz")
        self.rate = rate
        self._data = bytearray()
        self._odd = b""  # a frame may end mid-sample

    @property
    def size(self) -> int:
        """Bytes buffered."""
        return len(self._data)

    @property
    def seconds(self) -> float:
        """Audio buffered, in seconds."""
        return len(self._data) / 2 / self.rate

    def append(self, frame: bytes) -> None:
        """Add a binary frame (any length; a trailing odd byte waits for the next frame)."""
        data = self._odd + frame
        cut = len(data) - len(data) % 2
        self._data += data[:cut]
        self._odd = data[cut:]

    def samples(self, start: float = 0.0) -> Any:
        """The audio from ``start`` seconds on (default: everything) as float32 at 16 kHz.

        Only that part is converted and resampled: a live stream's partials read a window.
        """
        import numpy as np

        offset = min(len(self._data), int(max(start, 0.0) * self.rate) * 2)
        pcm = np.frombuffer(bytes(self._data[offset:]), dtype="<i2").astype(np.float32) / 32768.0
        return pcm if self.rate == SAMPLE_RATE else _resample(pcm, self.rate)


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Linear interpolation to 16 kHz: enough for speech recognition, no extra dependency."""
    import numpy as np

    count = int(len(samples) * SAMPLE_RATE / rate)
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    positions = np.arange(count, dtype=np.float64) * (rate / SAMPLE_RATE)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)
