"""Long audio and the offline voice: the cost of finding pauses, and Piper's first bytes.

1. Silero VAD (inside faster-whisper) over files of 1 and 10 minutes made of the committed
   clip (4.05 s) and 1.5 s pauses: seconds, times real time, and the pieces planned at
   the default 600 s limit.
2. Piper (the optional extra ``piper``) speaking a three-sentence text, ``--runs`` times
   after one warm-up: time to the first pcm bytes (the first sentence) against the whole
   clip, RTF, and the whole mp3 (encoded once the clip is complete). Usage::

    uv run python bench/speech_offline.py --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from providers.speech.piper_tts import PiperSpeech  # noqa: E402
from providers.speech.types import PCM_SAMPLE_RATE, TtsRequest  # noqa: E402
from speech.decode import SAMPLE_RATE, decode_audio  # noqa: E402
from speech.split import plan_pieces, speech_spans  # noqa: E402

CLIP = ROOT / "tests" / "data" / "speech" / "meeting_notes_en.wav"
TEXT = (
    "Please send the meeting notes to the whole team by Friday. The budget review moves to "
    "Monday morning. Thank you all for the good work this week."
)


def vad() -> None:
    clip = decode_audio(CLIP.read_bytes(), filename=CLIP.name, max_seconds=60).samples
    unit = np.concatenate([clip, np.zeros(SAMPLE_RATE * 3 // 2, dtype=np.float32)])
    for minutes in (1, 10):
        audio = np.concatenate([unit] * (int(minutes * 60 * SAMPLE_RATE / len(unit)) + 1))
        seconds = len(audio) / SAMPLE_RATE
        started = time.perf_counter()
        spans = speech_spans(audio)
        took = time.perf_counter() - started
        pieces = plan_pieces(len(audio), spans, 600 * SAMPLE_RATE)
        print(
            f"VAD {seconds:6.0f} s audio  {took:5.2f} s ({seconds / took:.0f}x real time), "
            f"{len(spans)} speech spans, {len(pieces)} piece(s) of <= 600 s"
        )


async def speak(piper: PiperSpeech, fmt: str) -> tuple[float, float, int]:
    request = TtsRequest(text=TEXT, model="piper", voice="en_US-joe-medium", format=fmt)  # type: ignore[arg-type]
    started = time.perf_counter()
    first, size = 0.0, 0
    async for chunk in piper.synthesize(request, upstream=piper.upstream):
        first = first or time.perf_counter() - started
        size += len(chunk)
    return first, time.perf_counter() - started, size


async def piper_numbers(runs: int) -> None:
    piper = PiperSpeech()
    if not piper.available:
        print("Piper: the optional extra `piper` is not installed")
        return
    started = time.perf_counter()
    await speak(piper, "pcm")
    print(f"Piper load + first clip {time.perf_counter() - started:.2f} s")
    for fmt in ("pcm", "mp3"):
        results = [await speak(piper, fmt) for _ in range(runs)]
        first = statistics.median(r[0] for r in results)
        whole = statistics.median(r[1] for r in results)
        line = f"Piper {fmt}  first bytes {first * 1000:5.0f} ms, whole {whole * 1000:5.0f} ms"
        if fmt == "pcm":
            audio = results[0][2] / (2 * PCM_SAMPLE_RATE)
            line += f", {audio:.1f} s of audio, RTF {whole / audio:.2f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    vad()
    asyncio.run(piper_numbers(args.runs))


if __name__ == "__main__":
    main()
