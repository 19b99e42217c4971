"""A fake OpenAI upstream: real HTTP on 127.0.0.1, the Chat Completions wire protocol.

Tests drive the real clients (``langchain-openai``, the ``openai`` SDK, the service's relay)
against it; the chat overhead benchmark uses it as the upstream. It is a bare asyncio HTTP/1.1
server (keep-alive, Content-Length bodies, chunked SSE answers) on a thread of its own, so it
costs far less CPU per request than the gateway it measures.

Use in tests (function-scoped fixture, state reset per test)::

    def test_x(fake_openai):
        fake_openai.fail_next(status=429, retry_after="1")
        fake_openai.reply = "hello"
        ... fake_openai.requests[-1].body ...

Standalone (the benchmark): ``python -m tests.fakes.openai_server --port 0`` prints
``READY <base_url>`` and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Script:
    """A scripted misbehaviour for the next request(s)."""

    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0


@dataclass
class FakeOpenAI:
    """The fake upstream; attributes are the knobs tests turn."""

    reply: str | None = None
    token_delay: float = 0.0
    requests: list[RecordedRequest] = field(default_factory=list)
    client_disconnected: threading.Event = field(default_factory=threading.Event)
    completed_streams: int = 0
    record: bool = True
    base_url: str = ""
    _scripts: deque[_Script] = field(default_factory=deque)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.base_events.Server | None = None
    _thread: threading.Thread | None = None

    # -- control --------------------------------------------------------------------
    def fail_next(self, *, status: int, retry_after: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` chat requests with ``status`` (OpenAI error body)."""
        self._scripts.extend(_Script(status=status, retry_after=retry_after) for _ in range(times))

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Sleep ``seconds`` before answering the next ``times`` chat requests."""
        self._scripts.extend(_Script(delay=seconds) for _ in range(times))

    def reset(self) -> None:
        """Forget requests and scripts; default reply."""
        self.reply, self.token_delay = None, 0.0
        self.requests.clear()
        self._scripts.clear()
        self.client_disconnected.clear()
        self.completed_streams = 0

    # -- lifecycle ------------------------------------------------------------------
    def start(self, port: int = 0) -> FakeOpenAI:
        """Serve on 127.0.0.1 from a background thread."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", port)
            )
            bound = self._server.sockets[0].getsockname()[1]
            self.base_url = f"http://127.0.0.1:{bound}/v1"
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- HTTP -----------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                raw = await reader.readexactly(length) if length else b""
                body = json.loads(raw) if raw else None
                if self.record:
                    self.requests.append(RecordedRequest(method, path, headers, body))
                keep_alive = await self._route(method, path, headers, body, writer)
                if not keep_alive or headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _route(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
        writer: asyncio.StreamWriter,
    ) -> bool:
        if not headers.get("authorization", "").startswith("Bearer "):
            return await self._error(writer, 401, "missing API key", "invalid_api_key")
        if method == "GET" and path.endswith("/models"):
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                for m in ("gpt-4o-mini", "gpt-4o")
            ]
            return await self._json(writer, 200, {"object": "list", "data": data})
        if method == "POST" and path.endswith("/chat/completions"):
            script = self._scripts.popleft() if self._scripts else None
            if script and script.delay:
                await asyncio.sleep(script.delay)
            if script and script.status:
                extra = (
                    {"Retry-After": script.retry_after} if script.retry_after is not None else {}
                )
                return await self._error(
                    writer, script.status, f"scripted {script.status}", "scripted", extra
                )
            if body.get("stream"):
                return await self._stream(writer, body)
            return await self._json(writer, 200, self._completion(body))
        return await self._error(writer, 404, f"no route {method} {path}", "not_found")

    def _content(self, body: dict[str, Any]) -> str:
        if self.reply is not None:
            return self.reply
        last = next((m for m in reversed(body.get("messages", [])) if m.get("role") == "user"), {})
        content = last.get("content", "")
        return "echo: " + (content if isinstance(content, str) else json.dumps(content))

    @staticmethod
    def _prompt_tokens(body: dict[str, Any]) -> int:
        return sum(len(str(m.get("content", "")).split()) + 3 for m in body.get("messages", []))

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        content = self._content(body)
        prompt, completion = self._prompt_tokens(body), len(content.split())
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "gpt-4o-mini"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    async def _stream(self, writer: asyncio.StreamWriter, body: dict[str, Any]) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
        )
        words = self._content(body).split(" ")
        tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "gpt-4o-mini"),
        }

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            data = (
                b"data: "
                + json.dumps({**base, "choices": choices, **extra}, separators=(",", ":")).encode()
                + b"\n\n"
            )
            return b"%x\r\n%s\r\n" % (len(data), data)

        try:
            writer.write(
                event(
                    [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None,
                        }
                    ]
                )
            )
            for token in tokens:
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                writer.write(
                    event([{"index": 0, "delta": {"content": token}, "finish_reason": None}])
                )
                await writer.drain()
            writer.write(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
            if (body.get("stream_options") or {}).get("include_usage"):
                prompt = self._prompt_tokens(body)
                usage = {
                    "prompt_tokens": prompt,
                    "completion_tokens": len(tokens),
                    "total_tokens": prompt + len(tokens),
                }
                writer.write(event([], usage=usage))
            done = b"data: [DONE]\n\n"
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            await writer.drain()
            if writer.is_closing() or writer.transport.is_closing():
                raise ConnectionResetError
        except (ConnectionError, RuntimeError):
            self.client_disconnected.set()
            return False
        self.completed_streams += 1
        return True

    async def _json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
    ) -> bool:
        data = json.dumps(payload, separators=(",", ":")).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\n{extra}\r\n".encode()
            + data
        )
        await writer.drain()
        return True

    async def _error(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        message: str,
        code: str,
        headers: dict[str, str] | None = None,
    ) -> bool:
        kind = (
            "rate_limit_error"
            if status == 429
            else "api_error"
            if status >= 500
            else "invalid_request_error"
        )
        return await self._json(
            writer, status, {"error": {"message": message, "type": kind, "code": code}}, headers
        )


_SESSION: FakeOpenAI | None = None


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """The fake upstream (one per test session), reset for each test."""
    global _SESSION
    if _SESSION is None:
        _SESSION = FakeOpenAI().start()
    _SESSION.reset()
    yield _SESSION
    _SESSION.reset()


def main() -> None:
    """Serve standalone until killed (for benchmarks in another process)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    fake = FakeOpenAI(record=False).start(args.port)
    print(f"READY {fake.base_url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
