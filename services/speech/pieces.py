"""Audio longer than a provider takes: cut in the silences, transcribed, stitched back.

Pieces are transcribed at most ``speech_piece_concurrency`` at once; the stitched
transcript has the file's times. A file within the limits goes to the provider as
uploaded (one call). Pieces are sent as 16 kHz mono WAV; OpenAI takes at most 25 MB a
file (``speech_openai_max_file_bytes``), any provider ``speech_piece_max_seconds`` a piece.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from core.config import Settings
from providers.registry import Upstream
from providers.speech.types import SttRequest, Transcriber, Transcript
from speech.decode import SAMPLE_RATE
from speech.split import plan_pieces, speech_spans, stitch, wav_bytes

_WAV_HEADER = 44


class PieceTranscriber:
    """Splits, transcribes with bounded concurrency and stitches; or makes the one call."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def max_samples(self, transcriber: Transcriber) -> int:
        """The longest piece ``transcriber`` is sent, in samples."""
        limit = int(self._settings.speech_piece_max_seconds * SAMPLE_RATE)
        if transcriber.provider == "openai":
            limit = min(limit, (self._settings.speech_openai_max_file_bytes - _WAV_HEADER) // 2)
        return max(limit, SAMPLE_RATE)

    def fits(self, transcriber: Transcriber, request: SttRequest) -> bool:
        """Whether the file goes as it is (short enough, and small enough for OpenAI)."""
        if len(request.samples) > self.max_samples(transcriber):
            return False
        cap = self._settings.speech_openai_max_file_bytes
        return transcriber.provider != "openai" or len(request.data) <= cap

    async def transcribe(
        self, transcriber: Transcriber, request: SttRequest, upstream: Upstream
    ) -> Transcript:
        """The file's transcript, in pieces when it does not fit one call."""
        if self.fits(transcriber, request):
            return await transcriber.transcribe(request, upstream=upstream)
        samples = request.samples
        spans = await asyncio.to_thread(speech_spans, samples)
        pieces = plan_pieces(len(samples), spans, self.max_samples(transcriber))
        slots = asyncio.Semaphore(self._settings.speech_piece_concurrency)
        stem = request.filename.rsplit(".", 1)[0] or "audio"

        async def one(index: int, start: int, end: int) -> tuple[float, float, Transcript]:
            part = samples[start:end]
            async with slots:
                data = await asyncio.to_thread(wav_bytes, part)
                piece = replace(
                    request,
                    data=data,
                    filename=f"{stem}-{index + 1:03d}.wav",
                    content_type="audio/wav",
                    samples=part,
                    duration_s=len(part) / SAMPLE_RATE,
                )
                transcript = await transcriber.transcribe(piece, upstream=upstream)
            return start / SAMPLE_RATE, len(part) / SAMPLE_RATE, transcript

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(i, a, b)) for i, (a, b) in enumerate(pieces)]
        return stitch([t.result() for t in tasks], request.duration_s)
