"""``WS /api/speech/stream``: live transcription over a websocket.

The token comes in the ``Authorization`` header or a ``token`` query parameter (browsers
cannot set headers on a websocket); a missing or bad one is refused before the handshake
completes (HTTP 403). Then the client may send ``{"type": "config", "sample_rate": 16000,
"language": "ko"}``, binary frames of PCM16 mono, and ``{"type": "end"}``; the server sends
``{"type": "partial", "text"}`` at least every 2 s of audio and ``{"type": "final", "text",
"language", "duration_s", "segments"}`` at the end, or ``{"type": "error", "code",
"message"}`` before closing.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from auth.tokens import Principal
from core.errors import ApiError
from services.speech_stream import StreamSession
from speech.render import as_json

router = APIRouter(tags=["speech"])

_POLICY_VIOLATION, _TOO_BIG = 1008, 1009


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
    """Partial transcripts while PCM16 audio arrives, a final one at ``end``."""
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
        error = await _converse(websocket, session)
    except WebSocketDisconnect:
        pass
    except ApiError as exc:
        error = exc.code
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.send_json({"type": "error", "code": exc.code, "message": exc.message})
            await websocket.close(code=_TOO_BIG if exc.status_code == 413 else 1003)
    finally:
        session.close(error)


async def _converse(websocket: WebSocket, session: StreamSession) -> str | None:
    """The session's frames until ``end`` (None: finished) or the client leaves."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return "client_disconnected"
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
            await websocket.close(code=1000)
            return None
        else:
            raise ApiError(422, "invalid_request", f"unknown message type {control['type']!r}")


def _control(text: str | None) -> dict[str, Any]:
    """A JSON text frame with a ``type``, or the 422 saying what is wrong."""
    try:
        value = json.loads(text or "")
    except ValueError as exc:
        raise ApiError(422, "invalid_request", "text frames must be JSON objects") from exc
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ApiError(422, "invalid_request", 'text frames need a "type"')
    return value
