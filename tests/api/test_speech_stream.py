"""``WS /api/speech/stream`` with a real websocket client: auth, partials, final, caps, hang-ups."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from providers.speech.whisper_files import packaged_model_dir
from tests.support.audio import CLIP_TEXT, clip_pcm, clip_wav, pcm_frames, words
from tests.support.service import RunningService, ServiceFactory, speech_ws_url, usage_rows


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return packaged_model_dir(tmp_path_factory.mktemp("models"))


def resampled_pcm(rate: int) -> bytes:
    """The clip as PCM16 mono at ``rate`` (PyAV's resampler)."""
    import io

    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    with av.open(io.BytesIO(clip_wav())) as source:
        frames = [f for frame in source.decode(audio=0) for f in resampler.resample(frame)]
    frames += resampler.resample(None)
    return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)


def receive_json(ws: ClientConnection) -> dict[str, Any]:
    message = ws.recv(timeout=60)
    assert isinstance(message, str)
    return json.loads(message)


@pytest.mark.slow
def test_partials_while_audio_arrives_then_the_final(
    services: ServiceFactory, whisper_dir: Path
) -> None:
    service = services.start(speech_local_model_dir=whisper_dir)
    headers = {"Authorization": f"Bearer {service.token()}"}
    with connect(speech_ws_url(service), additional_headers=headers) as ws:
        ws.send(json.dumps({"type": "config", "sample_rate": 16_000, "language": "en"}))
        partials = []
        for frame in pcm_frames(clip_pcm()):
            ws.send(frame)
        ws.send(json.dumps({"type": "end"}))
        while True:
            message = receive_json(ws)
            if message["type"] != "partial":
                break
            partials.append(message["text"])
        assert message["type"] == "final", message
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert len(partials) == 2  # at 2 s and 4 s of the 4.05 s clip
    assert words(partials[-1])[:3] == ["please", "send", "the"]
    assert words(message["text"]) == words(CLIP_TEXT)
    assert message["language"] == "en" and message["duration_s"] == pytest.approx(4.05, abs=0.01)
    assert message["segments"] and message["segments"][0]["start"] < 1
    rows = usage_rows(service, 1)
    assert [(r["route"], r["provider"], r["status"]) for r in rows] == [
        ("speech.stream", "local", "ok")
    ]
    assert float(rows[0]["audio_seconds"]) == pytest.approx(4.05, abs=0.01)  # what was sent


@pytest.mark.slow
def test_other_sample_rates_are_resampled(services: ServiceFactory, whisper_dir: Path) -> None:
    service = services.start(speech_local_model_dir=whisper_dir)
    at_48k = resampled_pcm(48_000)  # a browser's AudioContext rate
    with connect(speech_ws_url(service, service.token())) as ws:
        ws.send(json.dumps({"type": "config", "sample_rate": 48_000, "language": "en"}))
        for frame in pcm_frames(at_48k, rate=48_000):
            ws.send(frame)
        ws.send(json.dumps({"type": "end"}))
        message = receive_json(ws)
        while message["type"] == "partial":
            message = receive_json(ws)
    assert message["type"] == "final" and words(message["text"]) == words(CLIP_TEXT)


def test_anonymous_and_bad_tokens_are_refused_before_accepting(
    service: RunningService,
) -> None:
    for url, headers in [
        (speech_ws_url(service), {}),
        (speech_ws_url(service, "not-a-jwt"), {}),
        (speech_ws_url(service), {"Authorization": "Bearer not-a-jwt"}),
        (speech_ws_url(service, service.token()[:-4] + "AAAA"), {}),
    ]:
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers=headers).close()
        assert refused.value.response.status_code == 403


def test_bad_frames_and_caps_end_the_session_with_an_error(services: ServiceFactory) -> None:
    service = services.start(speech_max_audio_seconds=1)
    cases: list[tuple[list[Any], str]] = [
        (["not json"], "invalid_request"),
        ([json.dumps({"type": "dance"})], "invalid_request"),
        ([json.dumps({"type": "config", "sample_rate": 1000})], "invalid_request"),
        ([b"\x00\x00" * 100, json.dumps({"type": "config"})], "invalid_request"),
        ([b"\x00\x00" * 16_000, b"\x00\x00" * 1_000], "audio_too_long"),
    ]
    for frames, code in cases:
        with connect(speech_ws_url(service, service.token())) as ws:
            for frame in frames:
                ws.send(frame)
            message = receive_json(ws)
            assert message["type"] == "error" and message["code"] == code, (frames, message)
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
    rows = usage_rows(service, len(cases))
    assert sorted(r["error_code"] for r in rows) == sorted(code for _f, code in cases)


def test_an_empty_stream_and_a_client_that_vanishes(service: RunningService) -> None:
    with connect(speech_ws_url(service, service.token())) as ws:
        ws.send(json.dumps({"type": "end"}))
        message = receive_json(ws)
    assert message == {
        "type": "final",
        "text": "",
        "language": None,
        "duration_s": 0.0,
        "segments": [],
    }
    with contextlib.suppress(ConnectionClosed, OSError):
        with connect(speech_ws_url(service, service.token())) as gone:
            gone.send(b"\x00\x00" * 8_000)  # half a second, then gone without a word
            gone.socket.close()
    rows = usage_rows(service, 2)
    assert sorted(r["error_code"] or "ok" for r in rows) == ["client_disconnected", "ok"]
    assert httpx.get(f"{service.url}/healthz").status_code == 200
