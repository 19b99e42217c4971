"""``WS /api/speech/stream``: live transcription, and spoken chat turns, over a websocket.

The token comes in the ``Authorization`` header or a ``token`` query parameter (browsers
cannot set headers on a websocket); a missing or bad one is refused before the handshake
completes (HTTP 403). Then the client may send ``{"type": "config", "sample_rate": 16000,
"language": "ko"}``, binary frames of PCM16 mono, and ``{"type": "end"}``; the server sends
``{"type": "partial", "text"}`` at least every 2 s of audio and ``{"type": "final", "text",
"language", "duration_s", "segments"}`` at the end, or ``{"type": "error", "code",
"message"}`` before closing.

Chat mode (``"mode": "chat"`` in the config, with ``thread_id``, and optionally ``voice``,
``format`` (``pcm`` default, 24 kHz PCM16 mono; ``mp3``, ``opus``, ``wav``) and ``speak``):
after the final, the transcript is a turn of the chat thread (the thread of
``/api/chat/completions``). The server sends ``{"type": "token", "text"}`` per piece of the
answer, then, when speaking, ``{"type": "audio_start", "content_type"}``, the audio as
binary frames, ``{"type": "audio_end", "bytes"}``; then ``{"type": "done", "thread_id",
"answer"}`` and closes (1000). When the answer cannot be spoken (no synthesis provider,
unknown voice) an ``error`` frame takes the audio's place and ``done`` still follows: the
answer is in the thread. Errors before the answer (``thread_busy``, ``no_speech``, limits)
are an ``error`` frame, then the close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from auth.tokens import Principal
from core.errors import ApiError
from services.speech_stream import STREAM_ROUTE, ChatMode, StreamSession
from services.voice import SpokenTurn
from speech.render import as_json

router = APIRouter(tags=["speech"])

_POLICY_VIOLATION, _UNSUPPORTED, _TOO_BIG = 1008, 1003, 1009


def _principal(websocket: WebSocket) -> Principal | None:
    """The caller, from the header or the ``token`` query parameter; None if not valid."""
    scheme, _, token = (websocket.headers.get("authorization") or "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    token = token or websocket.query_params.get("token", "")
    if not token:
        return None
    try:
        principal: Principal = websocket.app.state.token_verifier.verify(token)
    except ApiError:
        return None
    return principal


@router.websocket("/speech/stream")
async def speech_stream(websocket: WebSocket) -> None:
    """Partial transcripts while PCM16 audio arrives, a final one at ``end`` (and an answer)."""
    principal = _principal(websocket)
    if principal is None:
        await websocket.close(code=_POLICY_VIOLATION, reason="authentication required")
        return
    try:
        session = await StreamSession.open(websocket.app.state.services.speech, principal)
    except ApiError as exc:  # over a limit: refused before accepting, like a bad token
        await websocket.close(code=_POLICY_VIOLATION, reason=exc.message[:120])
        return
    await websocket.accept()
    error: str | None = "client_disconnected"
    try:
        text = await _transcribe(websocket, session)
        error = None
        session.close(None)  # the transcription is done: its usage event, whatever follows
        if text is not None and session.chat is not None:
            await _answer(websocket, principal, session.chat, text, session)
        await websocket.close(code=1000)
    except WebSocketDisconnect:
        pass
    except ApiError as exc:
        error = exc.code
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.send_json({"type": "error", "code": exc.code, "message": exc.message})
            await websocket.close(code=_TOO_BIG if exc.status_code == 413 else _UNSUPPORTED)
    finally:
        session.close(error)


async def _transcribe(websocket: WebSocket, session: StreamSession) -> str | None:
    """The session's frames until ``end``: the final's text (None: the client left)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if message.get("bytes") is not None:
            if session.feed(message["bytes"]):
                await websocket.send_json({"type": "partial", "text": await session.partial()})
            continue
        control = _control(message.get("text"))
        if control["type"] == "config":
            session.configure(control)
        elif control["type"] == "end":
            final = as_json(await session.final(), verbose=True)
            await websocket.send_json({"type": "final", **final})
            return str(final["text"])
        else:
            raise ApiError(422, "invalid_request", f"unknown message type {control['type']!r}")


async def _answer(
    websocket: WebSocket, principal: Principal, chat: ChatMode, text: str, session: StreamSession
) -> None:
    """The spoken turn's frames; a client that leaves meanwhile stops it (lock freed)."""
    if not text.strip():
        raise ApiError(422, "no_speech", "no speech was heard: nothing to answer")
    spoken = SpokenTurn(
        thread_id=chat.thread_id,
        transcript=text,
        language=session.language,
        voice=chat.voice,
        audio_format=chat.audio_format,
        speak=chat.speak,
    )
    events = websocket.app.state.services.voice.turn(principal, spoken, flow=STREAM_ROUTE)
    answer = asyncio.create_task(_relay(websocket, events))
    try:
        while True:
            # Watch the socket while answering: a departed client cancels the turn at once
            # (the model call stops, the turn is taken back, the thread's lock is freed).
            listen = asyncio.create_task(websocket.receive())
            await asyncio.wait({answer, listen}, return_when=asyncio.FIRST_COMPLETED)
            if answer.done():
                listen.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                    await listen
                break
            if listen.result()["type"] == "websocket.disconnect":
                answer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await answer
                raise WebSocketDisconnect(1001)
            # Frames sent during the answer are ignored.
    finally:
        if not answer.done():
            answer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await answer
    words = answer.result()
    await websocket.send_json({"type": "done", "thread_id": chat.thread_id, "answer": words})


async def _relay(websocket: WebSocket, events: Any) -> str:
    """Send the turn's events as frames; the answer's text."""
    pieces: list[str] = []
    sent = 0
    async with contextlib.aclosing(events):
        async for event in events:
            kind = event.get("type")
            if kind == "token":
                pieces.append(event["text"])
                await websocket.send_json({"type": "token", "text": event["text"]})
            elif kind == "audio":
                if not sent:
                    start = {"type": "audio_start", "content_type": event["content_type"]}
                    await websocket.send_json(start)
                sent += len(event["data"])
                await websocket.send_bytes(event["data"])
            elif kind == "audio_error":
                await websocket.send_json(
                    {"type": "error", "code": event["code"], "message": event["message"]}
                )
    if sent:
        await websocket.send_json({"type": "audio_end", "bytes": sent})
    return "".join(pieces)


def _control(text: str | None) -> dict[str, Any]:
    """A JSON text frame with a ``type``, or the 422 saying what is wrong."""
    try:
        value = json.loads(text or "")
    except ValueError as exc:
        raise ApiError(422, "invalid_request", "text frames must be JSON objects") from exc
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ApiError(422, "invalid_request", 'text frames need a "type"')
    return value
