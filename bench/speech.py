"""The embedded transcriber (faster-whisper, Whisper base, int8): real-time factor and memory.

Joins the packaged model into a temporary folder (timed), loads it (timed), then transcribes
the committed English clip (``tests/data/speech/meeting_notes_en.wav``, 4.05 s) and a
~40 s file made of it repeated with short pauses, each ``--runs`` times, with the service's
settings (beam 5, VAD). RTF = processing seconds / audio seconds (below 1: faster than real
time). Peak RSS is the process's high-water mark (``ru_maxrss``) after each phase. The
websocket's partial latency is the time to transcribe the buffer so far when a partial is
due (every 2 s of audio; a greedy draft): it is given at 2, 4, 8 and 16 s, and at 26 s, the
most a partial ever reads (``services.speech_stream``: a window of at most 24 s plus the 2 s
since the last partial, however long the session).

``--chat`` adds the websocket's chat mode end to end: the service (one uvicorn worker) with
the fake OpenAI upstream (chat and TTS, in its own process), the clip sent as PCM frames,
then ``end``; timed from ``end`` to the ``final`` transcript, the first answer token, the
first audio byte and ``done`` (the fake answers at once, so this is the service's own
latency: the final transcription, the thread turn, the synthesis relay). The clip is sent
at once, so ``final`` also waits for the partials queued before ``end``; the columns after
``final`` are the turn's own latency. Usage::

    uv run python bench/speech.py --threads 2 --runs 3 [--chat]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
    parser.add_argument("--chat", action="store_true", help="also time the websocket chat mode")
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
        for seconds in (2, 4, 8, 16, 26):
            buffer = long[: seconds * SAMPLE_RATE]
            took = []
            for _ in range(args.runs):
                started = time.perf_counter()
                await whisper.transcribe(request(buffer, draft=True), upstream=whisper.upstream)
                took.append(time.perf_counter() - started)
            print(f"partial at {seconds:>2} s     {statistics.median(took) * 1000:.0f} ms (median)")
        if args.chat:
            await chat_mode(folder, clip, args.runs)


async def chat_mode(model_dir: Path, clip: np.ndarray, runs: int) -> None:
    """Time one spoken chat turn over the websocket, from ``end`` on (medians of ``runs``)."""
    from websockets.asyncio.client import connect

    from bench._harness import fake_upstream, service, token

    pcm = (np.clip(clip, -1, 1) * 32767).astype("<i2").tobytes()
    frames = [pcm[i : i + 16_000] for i in range(0, len(pcm), 16_000)]  # 0.5 s each
    marks: dict[str, list[float]] = {"final": [], "first token": [], "first audio": [], "done": []}
    env = {"AHC_SPEECH_LOCAL_MODEL_DIR": str(model_dir), "AHC_SPEECH_LOCAL_THREADS": "2"}
    with fake_upstream(core=1) as upstream, service(upstream, core=0, env=env) as svc:
        url = svc.url.replace("http://", "ws://") + f"/api/speech/stream?token={token()}"
        for run in range(runs + 1):  # the first run loads the model: not counted
            async with connect(url, max_size=None) as ws:
                config = {"type": "config", "mode": "chat", "language": "en"}
                await ws.send(json.dumps({**config, "thread_id": f"bench-{run}"}))
                for frame in frames:
                    await ws.send(frame)
                started = time.perf_counter()
                await ws.send(json.dumps({"type": "end"}))
                seen: dict[str, float] = {}
                async for message in ws:
                    at = time.perf_counter() - started
                    kind = "audio" if isinstance(message, bytes) else json.loads(message)["type"]
                    name = {"token": "first token", "audio": "first audio"}.get(kind, kind)
                    seen.setdefault(name, at)
                    if kind == "done":
                        break
            if run:
                for name, values in marks.items():
                    values.append(seen.get(name, float("nan")))
    print("websocket chat mode      after `end`   after `final` (median ms)")
    for name, values in marks.items():
        since_final = [v - f for v, f in zip(values, marks["final"], strict=True)]
        print(
            f"  {name:<12} {statistics.median(values) * 1000:>16.0f} "
            f"{statistics.median(since_final) * 1000:>15.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
