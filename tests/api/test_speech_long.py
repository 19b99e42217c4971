"""Long audio: cut in its pauses into pieces a provider takes, transcribed and stitched with
the file's times; past ``speech_sync_max_seconds`` a job (202 + Location) that survives a
restart and is accounted once. The long clip is the committed one repeated with silence."""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx
import pytest

from providers.speech.whisper_files import packaged_model_dir
from speech.split import plan_pieces
from tests.fakes.openai_server import FakeOpenAI
from tests.support.audio import CLIP_TEXT, long_clip, word_error_rate
from tests.support.service import RunningService, ServiceFactory

PIECE_BYTES = 400_000  # 12.5 s of 16 kHz 16-bit WAV: the fake's (and the service's) file cap
SETTINGS: dict[str, Any] = {
    "speech_piece_max_seconds": 12.0,
    "speech_openai_max_file_bytes": PIECE_BYTES,
}


def post(service: RunningService, data: bytes, **fields: str) -> httpx.Response:
    return httpx.post(
        f"{service.api}/speech/transcribe",
        headers=service.headers(),
        files={"file": ("long.wav", data, "audio/wav")},
        data=fields,
        timeout=120,
    )


def poll(service: RunningService, location: str, **params: str) -> httpx.Response:
    deadline = time.monotonic() + 120
    while True:
        answer = httpx.get(
            f"{service.url}{location}", headers=service.headers(), params=params, timeout=30
        )
        assert answer.status_code == 200, answer.text
        kind = answer.headers["content-type"]
        if not kind.startswith("application/json") or answer.json()["status"] in (
            "done",
            "failed",
        ):
            return answer
        assert answer.headers["retry-after"] == "2"
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.1)


def piece_seconds(fake: FakeOpenAI) -> list[float]:
    """The length of each audio piece the fake was sent, in order of the names."""
    sent = sorted(
        (r.body["file"] for r in fake.requests if r.path.endswith("/audio/transcriptions")),
        key=lambda file: file[0],
    )
    assert all(len(data) <= PIECE_BYTES for _, data in sent)
    return [(len(data) - 44) / 32_000 for _, data in sent]


def usage_lines(export: str, headers: dict[str, str]) -> list[str]:
    """The usage events of the CSV export (no header)."""
    return httpx.get(export, headers=headers).text.splitlines()[1:]


def assert_cuts_in_pauses(lengths: list[float], pauses: list[tuple[float, float]]) -> None:
    offset = 0.0
    for length in lengths[:-1]:
        offset += length
        assert any(start <= offset <= end for start, end in pauses), (offset, pauses)


def test_the_plan_cuts_in_pauses_and_hard_cuts_speech_without_one() -> None:
    spans = [(0, 100), (150, 260), (300, 420)]
    assert plan_pieces(420, spans, 1000) == [(0, 420)]
    assert plan_pieces(420, spans, 300) == [(0, 280), (280, 420)]
    assert plan_pieces(420, spans, 130) == [
        (0, 125),
        (125, 255),  # all speech: cut at the limit
        (255, 280),
        (280, 410),
        (410, 420),
    ]
    assert plan_pieces(50, [], 20) == [(0, 20), (20, 40), (40, 50)]


def test_long_audio_is_cut_in_its_pauses_and_stitched(
    services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    service = services.start(**SETTINGS)
    fake_openai.max_audio_bytes = PIECE_BYTES
    audio, pauses = long_clip(6, 1.5)  # 33.3 s, ~1 MB: over the cap as one file
    answer = post(service, audio, model="whisper-1", response_format="verbose_json")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    lengths = piece_seconds(fake_openai)
    assert len(lengths) >= 3 and all(length <= 12.0 for length in lengths)
    assert sum(lengths) == pytest.approx(body["duration_s"], abs=0.01)
    assert_cuts_in_pauses(lengths, pauses)
    names = [f"long-{i:03d}.wav" for i in range(1, len(lengths) + 1)]
    assert body["text"] == " ".join(f"transcript of {name}" for name in names)
    # the fake answers one segment 0-1 s per piece: stitched, each starts at its piece's offset
    starts = [s["start"] for s in body["segments"]]
    offsets = [sum(lengths[:i]) for i in range(len(lengths))]
    assert starts == pytest.approx(offsets, abs=0.002)
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(body["segments"]))


def test_long_audio_becomes_a_job_accounted_once(
    services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    service = services.start(speech_sync_max_seconds=20.0, **SETTINGS)
    admin = service.headers("org-a", "boss", "admin")
    httpx.put(f"{service.api}/limits", headers=admin, json={"audio_seconds_per_month": 60})
    audio, pauses = long_clip(6, 1.5)
    accepted = post(service, audio, model="whisper-1", response_format="srt")
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    location = accepted.headers["location"]
    assert location == f"/api/speech/transcriptions/{job['id']}"
    assert job["status"] in ("queued", "running") and job["duration_s"] == pytest.approx(33.3, 0.01)
    # its seconds are held while it runs: a second one does not fit the 60 s
    refused = post(service, audio, model="whisper-1")
    assert (
        refused.status_code == 429 and refused.json()["error"]["limit"] == "audio_seconds_per_month"
    )
    srt = poll(service, location)
    assert srt.headers["content-type"].startswith("application/x-subrip")
    assert srt.text.startswith("1\n00:00:00,000 --> 00:00:01,000\ntranscript of long-001.wav")
    verbose = poll(service, location, response_format="verbose_json").json()
    assert verbose["status"] == "done" and verbose["text"].startswith("transcript of long-001")
    starts = [s["start"] for s in verbose["segments"]]
    assert starts == sorted(starts) and starts[0] == 0.0 and starts[-1] > 20
    assert_cuts_in_pauses(piece_seconds(fake_openai), pauses)
    # one usage event for the whole job, with the file's seconds
    deadline = time.monotonic() + 10
    while True:
        usage = httpx.get(f"{service.api}/usage", headers=admin).json()["totals"]
        if usage["requests"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert usage["requests"] == 1 and usage["audio_seconds"] == pytest.approx(
        job["duration_s"], abs=0.01
    )
    # someone else's job is not found; short files still answer at once
    other = httpx.get(f"{service.url}{location}", headers=service.headers("org-a", "bob"))
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    short, _ = long_clip(1, 0.5)
    assert post(service, short, model="whisper-1").status_code == 200


def test_a_failed_job_says_why(services: ServiceFactory, fake_openai: FakeOpenAI) -> None:
    service = services.start(speech_sync_max_seconds=5.0, speech_piece_max_seconds=30.0)
    fake_openai.fail_next(status=400, times=1)
    audio, _ = long_clip(2, 1.0)
    accepted = post(service, audio, model="whisper-1")
    assert accepted.status_code == 202, accepted.text
    failed = poll(service, accepted.headers["location"]).json()
    assert failed["status"] == "failed" and failed["error"]["code"]
    assert "text" not in failed


def test_an_accepted_job_survives_a_restart(
    db_services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    settings = {"speech_sync_max_seconds": 5.0, "speech_piece_max_seconds": 30.0}
    service = db_services.start(**settings)
    fake_openai.delay_next(30, times=1)  # the service goes down while the job runs
    audio, _ = long_clip(2, 1.0)
    accepted = post(service, audio, model="whisper-1")
    assert accepted.status_code == 202, accepted.text
    deadline = time.monotonic() + 10
    while not any(r.path.endswith("/audio/transcriptions") for r in fake_openai.requests):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    db_services.close()
    restarted = db_services.start(**settings)
    done = poll(restarted, accepted.headers["location"]).json()
    assert done["status"] == "done" and done["text"] == "transcript of long.wav"
    # accounted once: the run the restart cut short recorded nothing (the first service
    # flushed its events when it stopped), the run after it one event
    admin = restarted.headers("org-a", "boss", "admin")
    export = f"{restarted.api}/usage/export"
    deadline = time.monotonic() + 10
    events = usage_lines(export, admin)
    while not any(",ok," in line for line in events):
        assert time.monotonic() < deadline
        time.sleep(0.05)
        events = usage_lines(export, admin)
    assert len(events) == 1 and ",ok," in events[0]


@pytest.mark.slow
def test_the_local_model_transcribes_a_long_job_with_the_files_times(
    services: ServiceFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    whisper = packaged_model_dir(tmp_path_factory.mktemp("models"))
    service = services.start(
        speech_local_model_dir=whisper, speech_sync_max_seconds=5.0, speech_piece_max_seconds=8.0
    )
    audio, pauses = long_clip(2, 2.0)  # 12.1 s: two pieces, cut in the first pause
    accepted = post(service, audio, language="en", response_format="verbose_json")
    assert accepted.status_code == 202, accepted.text
    body = poll(service, accepted.headers["location"]).json()
    assert body["status"] == "done", body
    assert word_error_rate(body["text"], f"{CLIP_TEXT} {CLIP_TEXT}") <= 0.1  # 2 words of 22
    segments = body["segments"]
    assert all(a["start"] < b["start"] for a, b in itertools.pairwise(segments))
    second = [s for s in segments if s["start"] >= pauses[0][0]]
    assert second and word_error_rate(" ".join(s["text"] for s in second), CLIP_TEXT) <= 0.1
    assert second[0]["start"] < pauses[0][1] + 1.0  # where the second clip starts, not at 0
