"""A fake ElevenLabs API: real HTTP on 127.0.0.1, the endpoints the ``elevenlabs`` SDK calls.

``POST /v1/text-to-speech/{voice_id}`` (whole clip), ``.../stream`` (chunked, ``chunk_delay``
apart), ``GET /v2/voices`` (``voices.search``) and ``GET /v1/voices`` (``voices.get_all``).
The key travels in ``xi-api-key``; a missing one is a 401, an unknown voice a 404, both in
ElevenLabs' ``{"detail": {"status", "message"}}`` shape. The "audio" is deterministic bytes
(:func:`fake_tts`) made from the request, so tests can tell what was asked.

Tests get the ``fake_elevenlabs`` fixture (loaded as a plugin by ``tests/conftest.py``)::

    def test_x(fake_elevenlabs: FakeElevenLabs) -> None:
        client = ElevenLabs(base_url=fake_elevenlabs.base_url, api_key="xi-test")
        fake_elevenlabs.fail_next(429)
        assert fake_elevenlabs.requests[-1].path == "/v1/text-to-speech/voice-1/stream"
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.live_server import LiveServer

VOICES = (
    {"voice_id": "voice-en", "name": "Rachel", "labels": {"language": "en"}},
    {
        "voice_id": "voice-ko",
        "name": "Jiyoung",
        "labels": {"language": "ko"},
        "verified_languages": [{"language": "ko", "model_id": "eleven_multilingual_v2"}],
    },
)
_CONTENT_TYPES = {"mp3": "audio/mpeg", "pcm": "audio/pcm", "opus": "audio/ogg"}


@dataclass
class RecordedCall:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


def fake_tts(voice_id: str, body: dict[str, Any], output_format: str) -> bytes:
    """The fake's "audio" for a synthesis: its choices and text, repeated to ~4 KB."""
    line = f"{body.get('model_id')}|{voice_id}|{output_format}|{body.get('text')}\n".encode()
    return line * max(1, 4096 // len(line))


class FakeElevenLabs:
    """The fake API; its public attributes are the knobs tests turn and read."""

    def __init__(self) -> None:
        self.requests: list[RecordedCall] = []
        self._failures: deque[int] = deque()
        self._server: LiveServer | None = None
        self.base_url = ""
        self.reset()

    def reset(self) -> None:
        """Back to defaults."""
        self.requests.clear()
        self._failures.clear()
        self.chunks = 4  # chunks of one streamed answer
        self.chunk_delay = 0.0  # seconds between streamed chunks

    def fail_next(self, status: int, *, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status``."""
        self._failures.extend([status] * times)

    def start(self) -> FakeElevenLabs:
        """Serve on a free loopback port."""
        app = Starlette(
            routes=[
                Route("/v1/text-to-speech/{voice_id}", self._convert, methods=["POST"]),
                Route("/v1/text-to-speech/{voice_id}/stream", self._stream, methods=["POST"]),
                Route("/v2/voices", self._voices, methods=["GET"]),
                Route("/v1/voices", self._voices, methods=["GET"]),
            ]
        )
        self._server = LiveServer(app).__enter__()
        self.base_url = self._server.url
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None

    async def _admit(self, request: Request) -> Response | None:
        """Record the request; an error response when it must fail."""
        body = await request.json() if request.method == "POST" else None
        self.requests.append(
            RecordedCall(
                request.method,
                request.url.path,
                dict(request.query_params),
                {k.lower(): v for k, v in request.headers.items()},
                body,
            )
        )
        if not request.headers.get("xi-api-key"):
            return _error(401, "invalid_api_key", "xi-api-key header is missing")
        if self._failures:
            status = self._failures.popleft()
            return _error(status, "scripted", f"scripted {status}")
        voice = request.path_params.get("voice_id")
        if voice is not None and voice not in {v["voice_id"] for v in VOICES}:
            return _error(404, "voice_not_found", f"A voice with voice_id {voice} was not found.")
        if body is not None and not body.get("text"):
            return _error(422, "invalid_text", "text is required")
        return None

    async def _audio(self, request: Request) -> tuple[bytes, str] | Response:
        refused = await self._admit(request)
        if refused is not None:
            return refused
        output_format = request.query_params.get("output_format") or "mp3_44100_128"
        audio = fake_tts(request.path_params["voice_id"], self.requests[-1].body, output_format)
        return audio, _CONTENT_TYPES.get(output_format.split("_")[0], "audio/mpeg")

    async def _convert(self, request: Request) -> Response:
        answer = await self._audio(request)
        if isinstance(answer, Response):
            return answer
        return Response(answer[0], media_type=answer[1])

    async def _stream(self, request: Request) -> Response:
        answer = await self._audio(request)
        if isinstance(answer, Response):
            return answer
        audio, media_type = answer
        size = -(-len(audio) // max(1, self.chunks))

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(audio), size):
                if start and self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                yield audio[start : start + size]

        return StreamingResponse(chunks(), media_type=media_type)

    async def _voices(self, request: Request) -> Response:
        refused = await self._admit(request)
        if refused is not None:
            return refused
        voices = [dict(v, category="premade") for v in VOICES]
        if request.url.path.startswith("/v2"):
            return JSONResponse({"voices": voices, "has_more": False, "total_count": len(voices)})
        return JSONResponse({"voices": voices})


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"status": code, "message": message}}, status_code=status)


@pytest.fixture(scope="session")
def _fake_elevenlabs_session() -> Iterator[FakeElevenLabs]:
    fake = FakeElevenLabs().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_elevenlabs(_fake_elevenlabs_session: FakeElevenLabs) -> Iterator[FakeElevenLabs]:
    """The session's fake ElevenLabs, reset before and after the test."""
    _fake_elevenlabs_session.reset()
    yield _fake_elevenlabs_session
    _fake_elevenlabs_session.reset()
