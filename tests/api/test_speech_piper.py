"""The offline English voice (the optional extra ``piper``, installed with the dev group): the
round trip — Piper speaks a sentence, the embedded Whisper hears it back — its formats, its
voice in the list, and Korean still refused offline with the providers that can speak it."""

from __future__ import annotations

import io
from pathlib import Path

import av
import httpx
import pytest

from providers.speech.whisper_files import packaged_model_dir
from tests.support.audio import word_error_rate
from tests.support.service import RunningService, ServiceFactory

pytest.importorskip("piper", reason="the optional extra `piper` is not installed")

SENTENCE = "Please send the meeting notes to the whole team by Friday."


@pytest.fixture
def offline(services: ServiceFactory, tmp_path_factory: pytest.TempPathFactory) -> RunningService:
    """No provider keys at all: only the embedded models."""
    whisper = packaged_model_dir(tmp_path_factory.mktemp("models"))
    return services.start(openai_api_key=None, speech_local_model_dir=whisper)


def speak(service: RunningService, **body: object) -> httpx.Response:
    return httpx.post(
        f"{service.api}/speech/synthesize", headers=service.headers(), json=body, timeout=120
    )


def seconds_of(audio: bytes) -> float:
    with av.open(io.BytesIO(audio)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
        rate = container.streams.audio[0].rate
    return samples / rate


@pytest.mark.slow
def test_piper_speaks_english_and_whisper_hears_it_back(offline: RunningService) -> None:
    spoken = speak(offline, text=SENTENCE, format="wav")  # no model: the offline voice
    assert spoken.status_code == 200, spoken.text
    assert spoken.headers["content-type"] == "audio/wav" and spoken.content[:4] == b"RIFF"
    heard = httpx.post(
        f"{offline.api}/speech/transcribe",
        headers=offline.headers(),
        files={"file": ("piper.wav", spoken.content, "audio/wav")},
        data={"language": "en"},
        timeout=120,
    )
    assert heard.status_code == 200, heard.text
    assert word_error_rate(heard.json()["text"], SENTENCE) <= 0.1, heard.json()["text"]
    assert 2.0 < heard.json()["duration_s"] < 8.0


@pytest.mark.slow
def test_piper_formats_voice_and_korean(offline: RunningService) -> None:
    mp3 = speak(offline, text="Good morning, team.", model="piper", format="mp3")
    assert mp3.status_code == 200 and mp3.headers["content-type"] == "audio/mpeg"
    opus = speak(offline, text="Good morning, team.", model="piper", format="opus", speed=1.5)
    assert opus.status_code == 200 and opus.headers["content-type"] == "audio/ogg"
    assert 0.5 < seconds_of(opus.content) < seconds_of(mp3.content)  # faster: shorter
    pcm = speak(offline, text="Good morning, team.", model="piper", format="pcm", stream=True)
    assert pcm.status_code == 200 and len(pcm.content) % 2 == 0
    assert len(pcm.content) / 48_000 == pytest.approx(seconds_of(mp3.content), abs=0.2)
    voices = httpx.get(f"{offline.api}/speech/voices", headers=offline.headers()).json()["data"]
    assert voices == [
        {
            "id": "en_US-joe-medium",
            "name": "Joe (Piper, offline)",
            "provider": "piper",
            "languages": ["en"],
        }
    ]
    unknown = speak(offline, text="Hello", model="piper", voice="darth")
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_voice"
    for body in (
        {"text": "안녕하세요, 회의를 시작하겠습니다."},
        {"text": "안녕하세요", "model": "piper"},
    ):
        korean = speak(offline, **body)
        assert korean.status_code == 422, korean.text
        error = korean.json()["error"]
        assert error["code"] == "language_unsupported"
        assert error["providers"] == ["elevenlabs", "openai"]


def test_piper_can_be_switched_off(services: ServiceFactory, tmp_path: Path) -> None:
    service = services.start(openai_api_key=None, speech_piper_enabled=False)
    answer = speak(service, text="Hello", model="piper")
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "provider_unavailable"
