"""Voice chat: the websocket's chat mode and ``/runnables/voice``, with real clients.

The question is the committed English clip, transcribed by the embedded Whisper model; the
answer comes from the fake OpenAI upstream (``echo: <question>``, one chunk per word), and
is spoken by the fake OpenAI or the fake ElevenLabs server, over their real SDKs.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from langserve import RemoteRunnable
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from providers.speech.whisper_files import packaged_model_dir
from tests.fakes.elevenlabs_server import FakeElevenLabs, fake_tts
from tests.fakes.openai_server import FakeOpenAI, fake_speech
from tests.support.audio import CLIP_TEXT, clip_pcm, clip_wav, pcm_frames, words
from tests.support.service import RunningService, ServiceFactory, speech_ws_url, usage_rows

Frame = dict[str, Any] | bytes


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return packaged_model_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture
def voice_service(services: ServiceFactory, whisper_dir: Path) -> RunningService:
    return services.start(speech_local_model_dir=whisper_dir)


def ask(ws: ClientConnection, config: dict[str, Any]) -> None:
    """Send the chat-mode config, the clip as PCM frames, and ``end``."""
    ws.send(json.dumps({"type": "config", "mode": "chat", "language": "en", **config}))
    for frame in pcm_frames(clip_pcm()):
        ws.send(frame)
    ws.send(json.dumps({"type": "end"}))


def receive(ws: ClientConnection) -> Frame:
    message = ws.recv(timeout=60)
    return json.loads(message) if isinstance(message, str) else message


def conversation(ws: ClientConnection) -> list[Frame]:
    """Every frame until the server closes."""
    frames: list[Frame] = []
    try:
        while True:
            frames.append(receive(ws))
    except ConnectionClosed:
        return frames


def kinds(frames: list[Frame]) -> list[str]:
    """The frames' types, runs collapsed (binary frames as ``bytes``)."""
    seen: list[str] = []
    for frame in frames:
        kind = "bytes" if isinstance(frame, bytes) else frame["type"]
        if not seen or seen[-1] != kind:
            seen.append(kind)
    return seen


def thread_messages(service: RunningService, thread: str) -> list[tuple[str, str]]:
    response = httpx.get(f"{service.api}/chat/threads/{thread}", headers=service.headers())
    assert response.status_code == 200, response.text
    return [(m["role"], m["content"]) for m in response.json()["messages"]]


@pytest.mark.slow
def test_chat_mode_partials_final_tokens_audio_then_done(
    voice_service: RunningService, fake_openai: FakeOpenAI
) -> None:
    service = voice_service
    with connect(speech_ws_url(service, service.token())) as ws:
        ask(ws, {"thread_id": "talk-1", "voice": "nova"})
        frames = conversation(ws)
    assert kinds(frames) == [
        "partial",
        "final",
        "token",
        "audio_start",
        "bytes",
        "audio_end",
        "done",
    ]
    final = next(f for f in frames if isinstance(f, dict) and f["type"] == "final")
    assert words(final["text"]) == words(CLIP_TEXT)
    tokens = "".join(f["text"] for f in frames if isinstance(f, dict) and f["type"] == "token")
    assert tokens == f"echo: {final['text']}"
    assert len([f for f in frames if isinstance(f, dict) and f["type"] == "token"]) > 3
    done = frames[-1]
    assert done == {"type": "done", "thread_id": "talk-1", "answer": tokens}
    audio = b"".join(f for f in frames if isinstance(f, bytes))
    speech_request = next(r for r in fake_openai.requests if r.path.endswith("/audio/speech"))
    assert speech_request.body["input"] == tokens and speech_request.body["voice"] == "nova"
    assert speech_request.body["response_format"] == "pcm"
    assert audio == fake_speech(speech_request.body)
    start = next(f for f in frames if isinstance(f, dict) and f["type"] == "audio_start")
    assert start["content_type"] == "audio/pcm"
    assert frames[-2] == {"type": "audio_end", "bytes": len(audio)}

    # The turn is in the thread of /api/chat/completions, which continues it.
    assert thread_messages(service, "talk-1") == [("user", final["text"]), ("assistant", tokens)]
    followup = httpx.post(
        f"{service.api}/chat/completions",
        headers=service.headers(),
        json={"messages": [{"role": "user", "content": "and then?"}], "thread_id": "talk-1"},
    )
    assert followup.status_code == 200, followup.text
    sent = [m["content"] for m in fake_openai.requests[-1].body["messages"]]
    assert sent == [final["text"], tokens, "and then?"]

    rows = usage_rows(service, 4)
    assert sorted((r["route"], r["provider"]) for r in rows) == [
        ("chat.completions", "openai"),
        ("speech.stream", "local"),
        ("speech.stream", "openai"),
        ("speech.stream", "openai"),
    ]
    assert all(r["status"] == "ok" for r in rows)


@pytest.mark.slow
def test_chat_mode_speaks_with_elevenlabs(
    services: ServiceFactory, whisper_dir: Path, fake_elevenlabs: FakeElevenLabs
) -> None:
    service = services.start(
        speech_local_model_dir=whisper_dir,
        elevenlabs_api_key="xi-service",
        elevenlabs_base_url=fake_elevenlabs.base_url,
    )
    with connect(speech_ws_url(service), additional_headers=service.headers()) as ws:
        ask(ws, {"thread_id": "talk-xi", "voice": "voice-en", "format": "mp3"})
        frames = conversation(ws)
    assert kinds(frames)[-4:] == ["audio_start", "bytes", "audio_end", "done"]
    answer = frames[-1]["answer"]  # type: ignore[index]
    sent = fake_elevenlabs.requests[-1]
    assert sent.path == "/v1/text-to-speech/voice-en/stream"
    audio = b"".join(f for f in frames if isinstance(f, bytes))
    assert audio == fake_tts("voice-en", sent.body, sent.query["output_format"])
    assert sent.body["text"] == answer


@pytest.mark.slow
def test_without_a_voice_the_answer_comes_as_text_and_an_error(
    services: ServiceFactory, whisper_dir: Path
) -> None:
    # No OpenAI key and no Piper: the chat model is `local` (served by the fake), nobody speaks.
    service = services.start(
        speech_local_model_dir=whisper_dir, openai_api_key=None, speech_piper_enabled=False
    )
    with connect(speech_ws_url(service, service.token())) as ws:
        ask(ws, {"thread_id": "talk-offline"})
        frames = conversation(ws)
    assert kinds(frames) == ["partial", "final", "token", "error", "done"]
    error = frames[-2]
    assert isinstance(error, dict) and error["code"] == "provider_unavailable"
    assert "elevenlabs" in error["message"]
    assert [role for role, _ in thread_messages(service, "talk-offline")] == ["user", "assistant"]

    with connect(speech_ws_url(service, service.token())) as ws:  # text only: no error
        ask(ws, {"thread_id": "talk-offline", "speak": False})
        frames = conversation(ws)
    assert kinds(frames) == ["partial", "final", "token", "done"]
    assert len(thread_messages(service, "talk-offline")) == 4


@pytest.mark.slow
def test_another_users_thread_and_a_busy_thread_are_refused(
    voice_service: RunningService, fake_openai: FakeOpenAI
) -> None:
    service = voice_service
    mine = httpx.post(
        f"{service.api}/chat/completions",
        headers=service.headers(),
        json={"messages": [{"role": "user", "content": "hi"}], "thread_id": "private"},
    )
    assert mine.status_code == 200
    with connect(speech_ws_url(service, service.token(user="mallory"))) as ws:
        ask(ws, {"thread_id": "private", "speak": False})
        frames = conversation(ws)
    assert kinds(frames) == ["partial", "final", "error"]
    assert frames[-1]["code"] == "thread_not_found"  # type: ignore[index]
    assert len(thread_messages(service, "private")) == 2

    fake_openai.fail_next(status=500, times=5)  # the model fails: an error, nothing kept
    with connect(speech_ws_url(service, service.token())) as ws:
        ask(ws, {"thread_id": "private", "speak": False})
        frames = conversation(ws)
    assert kinds(frames) == ["partial", "final", "error"]
    assert frames[-1]["code"] == "upstream_error", frames[-1]  # type: ignore[index]
    assert len(thread_messages(service, "private")) == 2

    with connect(speech_ws_url(service, service.token())) as ws:
        ws.send(json.dumps({"type": "config", "mode": "chat", "thread_id": "bad id!"}))
        assert receive(ws) == {
            "type": "error",
            "code": "invalid_request",
            "message": "thread_id must match ^[A-Za-z0-9][A-Za-z0-9._:\\-]{0,127}$",
        }


@pytest.mark.slow
def test_a_client_that_leaves_mid_answer_frees_the_thread(
    voice_service: RunningService, fake_openai: FakeOpenAI
) -> None:
    service = voice_service
    fake_openai.token_delay = 0.3  # a slow answer: ~12 words, ~4 s
    with connect(speech_ws_url(service, service.token())) as ws:
        ask(ws, {"thread_id": "talk-gone"})
        frame = receive(ws)
        while isinstance(frame, bytes) or frame["type"] != "token":
            frame = receive(ws)
        ws.socket.close()  # gone mid-answer, without a close frame
    # The turn was stopped and taken back: the thread is free and holds nothing of it.
    fake_openai.token_delay = 0.0
    deadline = time.monotonic() + 10
    while fake_openai.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_openai.disconnects == 1  # the model call was cut, not left to finish
    after = httpx.post(
        f"{service.api}/chat/completions",
        headers=service.headers(),
        json={"messages": [{"role": "user", "content": "still there?"}], "thread_id": "talk-gone"},
    )
    assert after.status_code == 200, after.text
    assert thread_messages(service, "talk-gone") == [
        ("user", "still there?"),
        ("assistant", "echo: still there?"),
    ]


@pytest.mark.slow
def test_runnables_voice_through_remote_runnable(
    db_services: ServiceFactory, whisper_dir: Path, fake_openai: FakeOpenAI
) -> None:
    service = db_services.start(speech_local_model_dir=whisper_dir)
    limits = httpx.put(  # the question's audio is not prompt text: it must not count as such
        f"{service.api}/limits",
        headers=service.headers("org-a", "boss", "admin"),
        json={"tokens_per_day": 20_000},
    )
    assert limits.status_code == 200, limits.text
    voice = RemoteRunnable(f"{service.url}/runnables/voice", headers=service.headers())
    question = base64.b64encode(clip_wav()).decode()
    out = voice.invoke(
        {"audio": question, "voice": "alloy", "format": "mp3"},
        config={"configurable": {"thread_id": "talk-lc"}},
    )
    assert words(out["transcript"]) == words(CLIP_TEXT)
    assert out["answer"] == f"echo: {out['transcript']}"
    assert out["thread_id"] == "talk-lc" and out["audio_error"] is None
    speech_request = next(r for r in fake_openai.requests if r.path.endswith("/audio/speech"))
    assert base64.b64decode(out["audio"]) == fake_speech(speech_request.body)
    assert out["audio_format"] == "audio/mpeg"
    assert thread_messages(service, "talk-lc") == [
        ("user", out["transcript"]),
        ("assistant", out["answer"]),
    ]
    text_only = voice.invoke(
        {"transcript": "and tomorrow?", "speak": False},
        config={"configurable": {"thread_id": "talk-lc"}},
    )
    assert text_only["answer"] == "echo: and tomorrow?" and text_only["audio"] is None
    assert len(thread_messages(service, "talk-lc")) == 4
    rows = usage_rows(service, 4)
    assert sorted((r["route"], r["provider"]) for r in rows) == [
        ("runnables.voice", "local"),
        ("runnables.voice", "openai"),
        ("runnables.voice", "openai"),
        ("runnables.voice", "openai"),
    ]


def test_runnables_voice_refuses_bad_input_and_anonymous_callers(
    service: RunningService,
) -> None:
    url = f"{service.url}/runnables/voice/invoke"
    anonymous = httpx.post(url, json={"input": {"transcript": "hi"}})
    assert anonymous.status_code == 401
    bad_inputs: list[dict[str, Any]] = [
        {},
        {"audio": "not base64!"},
        {"transcript": "  "},
        {"transcript": "x", "format": "aac"},
    ]
    for bad in bad_inputs:
        response = httpx.post(url, headers=service.headers(), json={"input": bad})
        assert response.status_code == 422, (bad, response.text)
    not_audio = base64.b64encode(b"these bytes are no audio file at all").decode()
    response = httpx.post(url, headers=service.headers(), json={"input": {"audio": not_audio}})
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_runnables_voice_streams_a_text_question(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    voice = RemoteRunnable(f"{service.url}/runnables/voice", headers=service.headers())
    chunks = list(
        voice.stream(
            {"transcript": "good morning", "speak": False},
            config={"configurable": {"thread_id": "talk-stream"}},
        )
    )
    # A graph streams each node's update as it finishes: transcribe, chat, synthesize.
    assert [next(iter(chunk)) for chunk in chunks] == ["transcribe", "chat", "synthesize"]
    merged: dict[str, Any] = {}
    for chunk in chunks:
        merged.update(*chunk.values())
    assert merged["answer"] == "echo: good morning" and merged["audio"] is None
    assert thread_messages(service, "talk-stream") == [
        ("user", "good morning"),
        ("assistant", "echo: good morning"),
    ]


@pytest.mark.slow
def test_a_spoken_turn_waits_for_a_busy_thread_then_gives_up(
    services: ServiceFactory, whisper_dir: Path, fake_openai: FakeOpenAI
) -> None:
    service = services.start(speech_local_model_dir=whisper_dir, thread_lock_wait_seconds=0.5)
    fake_openai.reply = " ".join(f"w{i}" for i in range(1000))
    fake_openai.token_delay = 0.5  # a typed turn that outlasts the test holds the thread
    body = {"messages": [{"role": "user", "content": "long"}], "thread_id": "busy", "stream": True}
    with httpx.stream(
        "POST", f"{service.api}/chat/completions", headers=service.headers(), json=body
    ) as typed:
        assert typed.status_code == 200
        lines = typed.iter_lines()  # (kept: a dropped iterator closes the connection)
        next(lines)  # the turn has started: the thread is locked
        with connect(speech_ws_url(service, service.token())) as ws:
            ask(ws, {"thread_id": "busy", "speak": False})
            frames = conversation(ws)
    assert kinds(frames) == ["partial", "final", "error"]
    assert frames[-1]["code"] == "thread_busy"  # type: ignore[index]


@pytest.mark.slow
def test_offline_the_packaged_english_voice_speaks_the_answer(
    services: ServiceFactory, whisper_dir: Path
) -> None:
    # No key at all: the answer is spoken by Piper (the optional extra, installed for tests).
    service = services.start(speech_local_model_dir=whisper_dir, openai_api_key=None)
    with connect(speech_ws_url(service, service.token())) as ws:
        ask(ws, {"thread_id": "talk-piper"})
        frames = conversation(ws)
    assert kinds(frames)[-4:] == ["audio_start", "bytes", "audio_end", "done"]
    audio = b"".join(f for f in frames if isinstance(f, bytes))
    assert len(audio) > 10_000  # a spoken sentence of PCM16, not an empty clip
