"""The embedded transcriber (faster-whisper, Whisper base, int8): real-time factor and memory.

Joins the packaged model into a temporary folder (timed), loads it (timed), then transcribes
the committed English clip (``tests/data/speech/meeting_notes_en.wav``, 4.05 s) and a
~40 s file made of it repeated with short pauses, each ``--runs`` times, with the service's
settings (beam 5, VAD). RTF = processing seconds / audio seconds (below 1: faster than real
time). Peak RSS is the process's high-water mark (``ru_maxrss``) after each phase. The
websocket's partial latency is the time to transcribe the buffer so far when a partial is
due (every 2 s of audio; a greedy draft): it is given at 2, 4, 8 and 16 s. Usage::

    uv run python bench/speech.py --threads 2 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from providers.speech.local_whisper import LocalWhisper  # noqa: E402
from providers.speech.types import SttRequest  # noqa: E402
from providers.speech.whisper_files import packaged_model_dir  # noqa: E402
from speech.decode import SAMPLE_RATE, decode_audio  # noqa: E402

CLIP = ROOT / "tests" / "data" / "speech" / "meeting_notes_en.wav"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def request(samples: np.ndarray, *, draft: bool = False) -> SttRequest:
    seconds = len(samples) / SAMPLE_RATE
    return SttRequest(
        draft=draft,
        data=b"",
        filename="bench.wav",
        content_type="audio/wav",
        samples=samples,
        duration_s=seconds,
        model="whisper-base",
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compute-type", default="int8")
    args = parser.parse_args()

    clip = decode_audio(CLIP.read_bytes(), filename=CLIP.name, max_seconds=60).samples
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    long = np.concatenate([part for _ in range(9) for part in (clip, pause)])
    print(f"baseline peak RSS {peak_rss_mb():.0f} MB")
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        folder = packaged_model_dir(Path(cache))
        print(f"join parts        {time.perf_counter() - started:.2f} s")
        whisper = LocalWhisper(
            cache_dir=Path(cache),
            model_dir=folder,
            threads=args.threads,
            compute_type=args.compute_type,
        )
        started = time.perf_counter()
        await asyncio.to_thread(whisper.model)
        print(
            f"load model        {time.perf_counter() - started:.2f} s, "
            f"peak RSS {peak_rss_mb():.0f} MB"
        )
        for name, samples in (
            ("clip 4.05 s", clip),
            (f"long {len(long) / SAMPLE_RATE:.1f} s", long),
        ):
            rtfs = []
            for _ in range(args.runs):
                started = time.perf_counter()
                result = await whisper.transcribe(request(samples), upstream=whisper.upstream)
                rtfs.append((time.perf_counter() - started) / result.duration_s)
            print(
                f"{name:<17} RTF median {statistics.median(rtfs):.3f} "
                f"(min {min(rtfs):.3f}, max {max(rtfs):.3f}), peak RSS {peak_rss_mb():.0f} MB, "
                f"{len(result.text.split())} words"
            )
        for seconds in (2, 4, 8, 16):
            buffer = long[: seconds * SAMPLE_RATE]
            took = []
            for _ in range(args.runs):
                started = time.perf_counter()
                await whisper.transcribe(request(buffer, draft=True), upstream=whisper.upstream)
                took.append(time.perf_counter() - started)
            print(f"partial at {seconds:>2} s     {statistics.median(took) * 1000:.0f} ms (median)")


if __name__ == "__main__":
    asyncio.run(main())
