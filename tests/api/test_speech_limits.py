"""Speech against the limits: audio seconds and TTS characters per month, reserved before the
call and settled after (SQLite and PostgreSQL), the usage report's speech columns and prices."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.support.audio import clip_wav
from tests.support.service import RunningService, ServiceFactory

CLIP_SECONDS = 4.05  # tests/data/speech/meeting_notes_en.wav


def admin(service: RunningService) -> dict[str, str]:
    return service.headers("org-a", "boss", "admin")


def set_limits(service: RunningService, **limits: Any) -> dict[str, Any]:
    answer = httpx.put(f"{service.api}/limits", headers=admin(service), json=limits)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def transcribe(service: RunningService, user: str = "alice") -> httpx.Response:
    return httpx.post(
        f"{service.api}/speech/transcribe",
        headers=service.headers("org-a", user),
        files={"file": ("clip.wav", clip_wav(), "audio/wav")},
        data={"model": "whisper-1"},
        timeout=30,
    )


def speak(service: RunningService, text: str) -> httpx.Response:
    return httpx.post(
        f"{service.api}/speech/synthesize",
        headers=service.headers(),
        json={"text": text, "model": "tts-1", "format": "mp3"},
        timeout=30,
    )


def report(service: RunningService, events: int) -> dict[str, Any]:
    """The org's usage report once ``events`` events have landed."""
    deadline = time.monotonic() + 10
    while True:
        body: dict[str, Any] = httpx.get(f"{service.api}/usage", headers=admin(service)).json()
        if body["totals"]["requests"] >= events or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def refused_by(answer: httpx.Response) -> str:
    assert answer.status_code == 429, answer.text
    error = answer.json()["error"]
    assert error["code"] == "limit_exceeded" and error["limit"] in error["message"]
    assert int(answer.headers["retry-after"]) >= 1
    return str(error["limit"])


def test_the_limits_api_takes_the_speech_limits(db_services: ServiceFactory) -> None:
    service = db_services.start()
    put = set_limits(service, audio_seconds_per_month=600, tts_characters_per_month=50_000)
    assert put["audio_seconds_per_month"] == 600 and put["tts_characters_per_month"] == 50_000
    user = set_limits(service, user_id="alice", audio_seconds_per_month=60)
    assert user["tts_characters_per_month"] is None
    listed = httpx.get(f"{service.api}/limits", headers=admin(service)).json()["data"]
    assert [(r["user_id"], r["audio_seconds_per_month"]) for r in listed] == [
        (None, 600),
        ("alice", 60),
    ]
    bad = httpx.put(
        f"{service.api}/limits", headers=admin(service), json={"audio_seconds_per_month": -1}
    )
    assert bad.status_code == 422


def test_audio_seconds_are_held_then_settled(
    db_services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    service = db_services.start()
    set_limits(service, audio_seconds_per_month=10)  # two 4.05 s clips fit, not three
    fake_openai.fail_next(status=500, times=5)  # a failed call gives its seconds back
    assert transcribe(service).status_code == 502
    assert transcribe(service).status_code == 200
    assert transcribe(service).status_code == 200
    assert refused_by(transcribe(service)) == "audio_seconds_per_month"
    # the user's own limit is checked as well (bob has none of the org's left either)
    set_limits(service, audio_seconds_per_month=None)
    set_limits(service, user_id="bob", audio_seconds_per_month=5)
    assert transcribe(service, "bob").status_code == 200
    answer = transcribe(service, "bob")
    assert refused_by(answer) == "audio_seconds_per_month"
    assert answer.json()["error"]["scope"] == "user"

    body = report(service, 4)
    assert body["totals"]["audio_seconds"] == pytest.approx(3 * CLIP_SECONDS, abs=0.01)
    assert body["totals"]["tts_characters"] == 0
    export = httpx.get(f"{service.api}/usage/export", headers=admin(service))
    rows = list(csv.DictReader(io.StringIO(export.text)))
    seconds = sorted(float(r["audio_seconds"]) for r in rows)
    assert seconds == pytest.approx([0, CLIP_SECONDS, CLIP_SECONDS, CLIP_SECONDS], abs=0.01)


def test_tts_characters_are_held_then_settled(db_services: ServiceFactory) -> None:
    service = db_services.start()
    set_limits(service, tts_characters_per_month=25)
    assert speak(service, "Hello there").status_code == 200  # 11 characters
    assert speak(service, "Hello again").status_code == 200  # 22
    assert refused_by(speak(service, "Hello!")) == "tts_characters_per_month"  # 28 > 25
    assert speak(service, "Bye").status_code == 200  # 25: exactly at the limit
    body = report(service, 3)
    assert body["totals"]["tts_characters"] == 25
    assert body["totals"]["audio_seconds"] == 0


def test_concurrent_transcriptions_never_overshoot(
    db_services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    service = db_services.start()
    set_limits(service, audio_seconds_per_month=13)  # three 4.05 s clips
    fake_openai.delay_next(0.3, times=8)  # all are held before any settles

    async def all_at_once() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post(
                        f"{service.api}/speech/transcribe",
                        headers=service.headers(),
                        files={"file": ("clip.wav", clip_wav(), "audio/wav")},
                        data={"model": "whisper-1"},
                    )
                    for _ in range(8)
                )
            )
        return sorted(a.status_code for a in answers)

    assert asyncio.run(all_at_once()) == [200] * 3 + [429] * 5
    body = report(service, 3)
    assert body["totals"]["audio_seconds"] == pytest.approx(3 * CLIP_SECONDS, abs=0.01)


def test_the_usage_report_shows_the_speech_prices(services: ServiceFactory) -> None:
    service = services.start(speech_prices={"whisper-1": 0.01, "eleven_multilingual_v2": 120.0})
    body = report(service, 0)
    prices = body["speech_prices"]
    assert prices["transcription_usd_per_minute"]["whisper-1"] == 0.01
    assert prices["transcription_usd_per_minute"]["gpt-4o-mini-transcribe"] == 0.003
    assert prices["synthesis_usd_per_million_characters"]["tts-1"] == 15.0
    assert prices["synthesis_usd_per_million_characters"]["eleven_multilingual_v2"] == 120.0
    assert "whisper-1" not in prices["synthesis_usd_per_million_characters"]
