"""The embedded transcriber: faster-whisper (CTranslate2) on the CPU, offline.

The model is loaded lazily, once per process, in a worker thread (never at import, never on
the event loop); transcriptions run in threads too, at most ``concurrency`` at once, so the
service keeps answering while one runs. Voice activity detection (Silero, shipped inside
faster-whisper) skips silence, so a silent file answers an empty text quickly and Whisper is
not left to invent words (or loop) over noise.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from core.errors import ApiError
from providers.registry import Upstream
from providers.speech.types import Segment, SttRequest, Transcript
from providers.speech.whisper_files import packaged_model_dir

_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's default fallback ladder


class LocalWhisper:
    """faster-whisper behind the :class:`~providers.speech.types.Transcriber` interface."""

    provider = "local"
    upstream = Upstream(provider="local", base_url="in-process", api_key="")

    def __init__(
        self,
        *,
        cache_dir: Path,
        model_dir: Path | None = None,
        threads: int = 2,
        compute_type: str = "int8",
        beam_size: int = 5,
        concurrency: int = 1,
    ) -> None:
        self._cache_dir = cache_dir
        self._model_dir = model_dir
        self._threads = threads
        self._compute_type = compute_type
        self._beam_size = beam_size
        self._slots = asyncio.Semaphore(concurrency)
        self._lock = threading.Lock()
        self._model: Any = None

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (it is loaded by the first transcription)."""
        return self._model is not None

    def model(self) -> Any:
        """The ``WhisperModel``, loaded on first use (blocking: call from a thread)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from faster_whisper import WhisperModel

                    try:
                        folder = self._model_dir or packaged_model_dir(self._cache_dir)
                        self._model = WhisperModel(
                            str(folder),
                            device="cpu",
                            compute_type=self._compute_type,
                            cpu_threads=self._threads,
                            local_files_only=True,
                        )
                    except (OSError, RuntimeError, ValueError) as exc:  # missing or broken
                        raise ApiError(
                            503,
                            "model_unavailable",
                            f"the embedded Whisper model cannot be loaded: {exc}",
                        ) from exc
        return self._model

    async def transcribe(self, request: SttRequest, *, upstream: Upstream) -> Transcript:
        """Transcribe in a worker thread, waiting for a free slot first."""
        async with self._slots:
            return await asyncio.to_thread(self._run, request)

    def _run(self, request: SttRequest) -> Transcript:
        model = self.model()
        language = (request.language or "").strip().lower().split("-")[0] or None
        if language is not None and language not in model.supported_languages:
            raise ApiError(
                422,
                "unsupported_language",
                f"the embedded Whisper model has no language '{language}' (ISO 639-1 codes "
                "such as ko, en, ja)",
            )
        segments, info = model.transcribe(
            request.samples,
            language=language,
            task=request.task,
            initial_prompt=request.prompt or None,
            # A draft (a stream's partial): greedy, no temperature fallback; ~2-5x cheaper.
            beam_size=1 if request.draft else self._beam_size,
            temperature=0.0 if request.draft else _TEMPERATURES,
            vad_filter=True,
            condition_on_previous_text=False,  # one bad window must not derail the rest
        )
        parts = tuple(
            Segment(start=round(s.start, 3), end=round(s.end, 3), text=s.text.strip())
            for s in segments  # a generator: decoding happens while iterating
        )
        text = " ".join(p.text for p in parts if p.text).strip()
        return Transcript(
            text=text,
            language="en" if request.task == "translate" else info.language,
            duration_s=round(request.duration_s, 3),
            segments=parts,
        )
