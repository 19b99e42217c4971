"""What a speech call costs: per minute of audio (transcription), per character (synthesis).

Shipped prices are OpenAI's list prices; ElevenLabs bills in plan credits, so its models
are priced only when configured (``AHC_SPEECH_PRICES``). Unpriced models cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

#: USD per minute of audio.
STT_PRICES: dict[str, float] = {"whisper-1": 0.006, "gpt-4o-mini-transcribe": 0.003}
#: USD per 1M characters of text.
TTS_PRICES: dict[str, float] = {"tts-1": 15.0, "tts-1-hd": 30.0, "gpt-4o-mini-tts": 15.0}

_MILLION = Decimal(1_000_000)


class SpeechPrices:
    """Shipped prices merged with the configured ones (same unit per model kind)."""

    def __init__(
        self, overrides: dict[str, float] | None = None, stt_models: Iterable[str] = ()
    ) -> None:
        merged = {**STT_PRICES, **TTS_PRICES, **(overrides or {})}
        self._prices = {model: Decimal(str(price)) for model, price in merged.items()}
        self._stt = {*STT_PRICES, *stt_models}

    def table(self) -> dict[str, dict[str, float]]:
        """The prices in force, by kind (shown with the usage report)."""
        stt = {m: float(p) for m, p in sorted(self._prices.items()) if m in self._stt}
        tts = {m: float(p) for m, p in sorted(self._prices.items()) if m not in self._stt}
        return {
            "transcription_usd_per_minute": stt,
            "synthesis_usd_per_million_characters": tts,
        }

    def transcription(self, model: str, seconds: float) -> Decimal:
        """USD for ``seconds`` of audio transcribed by ``model``."""
        price = self._prices.get(model)
        return Decimal(0) if price is None else price * Decimal(str(round(seconds, 3))) / 60

    def synthesis(self, model: str, characters: int) -> Decimal:
        """USD for ``characters`` of text spoken by ``model``."""
        price = self._prices.get(model)
        return Decimal(0) if price is None else price * characters / _MILLION
