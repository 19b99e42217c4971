"""A fake OpenAI upstream: real HTTP on 127.0.0.1, the Chat Completions and Embeddings protocols.

Tests drive the real clients (``openai``, ``langchain-openai``, the relay) against it and the
chat overhead benchmark uses it as the upstream, so it must cost far less than the gateway:
a bare asyncio HTTP/1.1 server (uvloop; keep-alive, Content-Length bodies, chunked SSE flushed
per event) on a thread and loop of its own, for sync tests, async tests and other processes.

Tests get the ``fake_openai`` fixture (``tests/conftest.py`` loads this module as a plugin):
one server per session (``_fake_openai_session``), state reset around each test::

    def test_x(fake_openai: FakeOpenAI) -> None:
        client = openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test")
        fake_openai.reply = "hello"                          # default: "echo: <last user msg>"
        fake_openai.fail_next(status=429, retry_after="1")   # scripted, one per chat/embeddings
        fake_openai.structured_reply = '{"grades": []}'       # answers with a response_format
        ...
        assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-test"

Embeddings (``POST /v1/embeddings``) are a hashed bag of words: lowercased word tokens
(``\\w+`` runs) and the character bigrams of Hangul words, counted into ``dimensions``
buckets (default 1536) and L2-normalized. Deterministic, and texts sharing words with a query
score higher against it. ``usage.prompt_tokens`` is the number of word tokens (token-id
inputs: one per id). ``encoding_format="base64"`` (the SDK's default) is little-endian float32.

Audio: ``POST /v1/audio/transcriptions`` and ``/v1/audio/translations`` (multipart, as the
SDK sends it; ``body`` is then a dict of the form fields, the file as ``(filename, bytes)``)
answer ``transcript`` (default: ``"transcript of <filename>"``, or ``"translation of ..."``)
as json, verbose_json (one segment), text, srt or vtt; files over ``max_audio_bytes`` 413.
``POST /v1/audio/speech`` streams ``audio_chunks`` chunks (``audio_chunk_delay`` apart) of
the deterministic bytes :func:`fake_speech` makes from the request. Scripts apply to both.

Outside pytest: ``with FakeOpenAI() as fake: ...``. Standalone (the benchmark runs it pinned
to another core): ``python -m tests.fakes.openai_server --port 0`` prints
``READY <base_url>`` and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import math
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeAlias

import orjson
import pytest
import uvloop

Reader: TypeAlias = asyncio.StreamReader
Writer: TypeAlias = asyncio.StreamWriter
MODELS = ("gpt-4o-mini", "gpt-4o")
_REASONS = {status.value: status.phrase for status in HTTPStatus}
_ERROR_TYPES = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}
EMBEDDING_DIMENSIONS = 1536  # text-embedding-3-small and ada-002
_WORD = re.compile(r"\w+")
_HANGUL = re.compile(r"[\uac00-\ud7a3]{2,}")
_PIECE = re.compile(r"\s*\w+|\s*[^\w\s]+|\s+")
_QUOTED = re.compile(r"(?<!\w)'([^']+)'(?!\w)|\"([^\"]+)\"")  # not an apostrophe


@dataclass
class RecordedRequest:
    """One request as the fake received it (``body``: the parsed JSON, or None)."""

    method: str
    path: str
    headers: dict[str, str]  # names lowercased
    body: Any


class FakeOpenAI:
    """The fake upstream; its public attributes are the knobs tests turn and read."""

    def __init__(self, *, record: bool = True) -> None:
        self.record = record  # False for benchmarks: no per-request bookkeeping
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self.client_disconnected = threading.Event()  # set with each of `disconnects`
        self._scripts: deque[tuple[int, str | None, float]] = deque()  # status, retry, delay
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Back to defaults: no requests, scripts, reply override, delay or counters."""
        self.reply: str | None = None  # None: "echo: " + the last user message
        self.transcript: str | None = None  # None: "transcript of <filename>"
        self.max_audio_bytes: int | None = None  # larger audio files: 413, as OpenAI's 25 MB
        self.audio_chunks = 3  # chunks of one /audio/speech answer
        self.audio_chunk_delay = 0.0  # seconds before each chunk after the first
        self.stream_tokens: int | None = None  # None: one chunk per word of the reply
        self.token_delay = 0.0  # seconds before each streamed content chunk
        self.disconnects = 0  # answers abandoned: mid-stream (before [DONE]) or mid-delay
        self.completed_streams = 0
        self.parallel_tools = False  # True: call every offered tool at once (not the first)
        self.tool_arguments: dict[str, Any] | None = None  # None: an example of the schema
        self.structured_reply: str | None = None  # a response_format's answer (None: example)
        self.requests.clear()
        self._scripts.clear()
        self.client_disconnected.clear()

    def fail_next(self, *, status: int, retry_after: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` chat/embeddings/audio requests with ``status`` and an error."""
        self._scripts.extend((status, retry_after, 0.0) for _ in range(times))

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Sleep ``seconds`` before answering the next ``times`` chat/embeddings/audio requests."""
        self._scripts.extend((0, None, seconds) for _ in range(times))

    def cpu_time(self) -> float:
        """CPU seconds the server thread has used, to tell the fake's cost from the client's."""
        assert self._thread is not None and self._thread.ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(self._thread.ident))

    def start(self, port: int = 0) -> FakeOpenAI:
        """Serve on 127.0.0.1 from a daemon thread with its own event loop."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(port, ready), daemon=True)
        self._thread.start()
        if not ready.wait(10) or not self.base_url:
            raise RuntimeError("the fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        """Stop serving; open connections are dropped."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self, port: int, ready: threading.Event) -> None:
        self._loop = loop = uvloop.new_event_loop()  # ~40 % less CPU than asyncio's loop
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", port))
            self.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        except OSError:
            loop.close()
            return
        finally:
            ready.set()
        loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()

    async def _serve(self, reader: Reader, writer: Writer) -> None:
        """One connection: parse requests (keep-alive) until the client or a route closes."""
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, target, _ = head[0].split(" ", 2)
                headers = {}
                for line in head[1:]:
                    name, colon, value = line.partition(":")
                    if colon:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                raw = await reader.readexactly(length) if length else b""
                body = _parse_body(raw, headers.get("content-type", ""))
                request = RecordedRequest(method, target.partition("?")[0], headers, body)
                if self.record:
                    self.requests.append(request)
                if not await self._route(request, reader, writer):
                    break
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client went away
        except asyncio.CancelledError:
            pass  # stop() with keep-alive connections open; 3.11's start_server logs it otherwise
        except ValueError:  # a malformed request line or Content-Length
            _fail(writer, 400, "malformed request", "bad_request")
        finally:
            writer.close()

    async def _route(self, request: RecordedRequest, reader: Reader, writer: Writer) -> bool:
        """Answer one request; False closes the connection."""
        method, path, body = request.method, request.path, request.body
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _fail(writer, 401, "missing API key (Authorization: Bearer)", "invalid_api_key")
        if method == "GET" and path.endswith("/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in MODELS]
            return _respond(writer, 200, {"object": "list", "data": data})
        chat = path.endswith("/chat/completions")
        audio = path.endswith(("/audio/transcriptions", "/audio/translations", "/audio/speech"))
        if method != "POST" or not (chat or audio or path.endswith("/embeddings")):
            return _fail(writer, 404, f"no route {method} {path}", "unknown_url")
        if audio:
            return await self._audio(request, reader, writer)
        invalid = _invalid_chat(body) if chat else _invalid_embeddings(body)
        if invalid:
            return _fail(writer, 400, invalid, "invalid_request")
        scripted = await self._scripted(reader, writer)
        if scripted is not None:
            return scripted
        if not chat:
            return _respond(writer, 200, _embeddings(body))
        if calls := self._tool_calls(body):
            return await self._answer_tool_calls(body, calls, writer)
        if body.get("stream"):
            return await self._stream(body, reader, writer)
        tokens = self._tokens(body)
        message = {"role": "assistant", "content": "".join(tokens)}
        answer = _envelope(body, "chat.completion", message=message, finish_reason="stop")
        return _respond(writer, 200, {**answer, **_usage(body, len(tokens))})

    async def _scripted(self, reader: Reader, writer: Writer) -> bool | None:
        """Apply the next script: its delay, then its failure; None lets the request through."""
        status, retry_after, delay = self._scripts.popleft() if self._scripts else (0, None, 0)
        if delay:
            await asyncio.sleep(delay)
            if self._gone(reader, writer):  # e.g. the gateway gave up: a timeout
                return False
        if status:
            return _fail(writer, status, f"scripted {status}", "scripted", retry_after)
        return None

    async def _audio(self, request: RecordedRequest, reader: Reader, writer: Writer) -> bool:
        """``/audio/transcriptions``, ``/audio/translations`` and ``/audio/speech``."""
        body = request.body
        speech = request.path.endswith("/audio/speech")
        invalid = _invalid_speech(body) if speech else _invalid_transcription(body)
        if invalid:
            return _fail(writer, 400, invalid, "invalid_request")
        scripted = await self._scripted(reader, writer)
        if scripted is not None:
            return scripted
        if speech:
            return await self._speech(body, reader, writer)
        filename, task = body["file"][0], request.path.rsplit("/", 1)[1]
        if self.max_audio_bytes is not None and len(body["file"][1]) > self.max_audio_bytes:
            limit = self.max_audio_bytes
            return _fail(writer, 413, f"Maximum content size limit ({limit}) exceeded", "too_large")
        default = f"{'translation' if task == 'translations' else 'transcript'} of {filename}"
        text = self.transcript if self.transcript is not None else default
        kind = body.get("response_format") or "json"
        if kind == "verbose_json":
            segment = {"id": 0, "seek": 0, "start": 0.0, "end": 1.0, "text": " " + text}
            payload = {
                "task": "translate" if task == "translations" else "transcribe",
                "language": "english",
                "duration": 1.0,
                "text": text,
                "segments": [segment],
            }
            return _respond(writer, 200, payload)
        if kind == "json":
            usage = {"type": "duration", "seconds": 1}
            return _respond(writer, 200, {"text": text, "usage": usage})
        if kind in ("srt", "vtt"):
            text = f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n"
        return _respond_bytes(writer, 200, text.encode(), "text/plain")

    async def _speech(self, body: dict[str, Any], reader: Reader, writer: Writer) -> bool:
        """The audio in ``audio_chunks`` HTTP chunks, ``audio_chunk_delay`` apart."""
        audio = fake_speech(body)
        n = max(1, self.audio_chunks)
        size = -(-len(audio) // n)
        kind = _SPEECH_TYPES.get(body.get("response_format") or "mp3", "audio/mpeg")
        writer.write(
            f"HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ntransfer-encoding: chunked\r\n\r\n".encode(
                "latin-1"
            )
        )
        try:
            for index in range(n):
                if index and self.audio_chunk_delay:
                    await asyncio.sleep(self.audio_chunk_delay)
                if self._gone(reader, writer):
                    return False
                piece = audio[index * size : (index + 1) * size]
                if piece:
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            return not self._gone(reader, writer, failed=True)
        return True

    def _tokens(self, body: dict[str, Any]) -> list[str]:
        """The reply as streamed chunks: its words, regrouped or repeated to ``stream_tokens``."""
        if self.reply is not None:
            content = self.reply
        elif self.structured_reply is not None and body.get("response_format"):
            content = self.structured_reply
        elif (structured := _tool_or_structured_reply(body)) is not None:
            content = structured
        else:
            users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
            last = users[-1].get("content", "") if users else ""
            content = "echo: " + (last if isinstance(last, str) else orjson.dumps(last).decode())
        words, n = content.split(" "), self.stream_tokens
        if n and n > len(words):
            words = [words[i % len(words)] for i in range(n)]
        elif n and n < len(words):
            per, extra = divmod(len(words), n)
            bounds = [k * per + min(k, extra) for k in range(n + 1)]
            words = [" ".join(words[a:b]) for a, b in itertools.pairwise(bounds)]
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    async def _stream(self, body: dict[str, Any], reader: Reader, writer: Writer) -> bool:
        """SSE over chunked encoding, one write per event; notes a client hanging up early."""
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        tokens, base = self._tokens(body), _envelope(body, "chat.completion.chunk")

        def event(delta: dict[str, str], finish: str | None = None) -> bytes:
            choices = [{"index": 0, "delta": delta, "finish_reason": finish}]
            return orjson.dumps({**base, "choices": choices})

        # Token events differ only in their content: splice it into a pre-serialized event.
        head, _, tail = event({"content": "\x00"}).partition(b'"\\u0000"')
        try:
            writer.write(_sse(event({"role": "assistant", "content": ""})))
            for token in tokens:
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                if self._gone(reader, writer):
                    return False
                writer.write(_sse(head + orjson.dumps(token) + tail))
                await writer.drain()
            writer.write(_sse(event({}, "stop")))
            if (body.get("stream_options") or {}).get("include_usage"):
                writer.write(_sse(orjson.dumps({**base, **_usage(body, len(tokens))})))
            await writer.drain()
        except ConnectionError:
            return not self._gone(reader, writer, failed=True)  # always gone: False
        if self._gone(reader, writer):
            return False
        self.completed_streams += 1  # counted before [DONE] so clients see it afterwards
        writer.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")  # last SSE event, last chunk
        return True

    def _gone(self, reader: Reader, writer: Writer, *, failed: bool = False) -> bool:
        """Whether the client hung up before its answer ended (then counted)."""
        # HTTP clients never half-close mid-answer: EOF on the reading side means gone.
        if not (failed or reader.at_eof() or writer.transport.is_closing()):
            return False
        self.disconnects += 1
        self.client_disconnected.set()
        return True

    # --- tool calls and structured output (issue 13) ------------------------------------
    def _tool_calls(self, body: dict[str, Any]) -> list[tuple[str, str]] | None:
        """The (name, JSON arguments) calls to answer with, or None for a text answer.

        Offered tools are called unless ``tool_choice`` is ``none`` or the last message is
        a tool result (then the answer is text): the named one, else the first (every one
        with ``parallel_tools``). Arguments: ``tool_arguments``, else what the last user
        message says (:func:`_arguments`), else an example of the schema.
        """
        tools, legacy = _offered_functions(body)
        messages = body.get("messages") or []
        last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
        if not tools or last.get("role") in ("tool", "function"):
            return None
        choice = body.get("function_call" if legacy else "tool_choice") or "auto"
        if choice == "none":
            return None
        if isinstance(choice, dict):
            named = (choice.get("function") or {}) if not legacy else choice
            chosen = [t for t in tools if t.get("name") == named.get("name")]
        elif self.parallel_tools and body.get("parallel_tool_calls") is not False and not legacy:
            chosen = tools
        else:
            chosen = tools[:1]
        asked = _last_user_text(messages)
        return [
            (
                str(tool.get("name")),
                orjson.dumps(
                    self.tool_arguments
                    if self.tool_arguments is not None
                    else _arguments(tool, asked)
                ).decode(),
            )
            for tool in chosen
        ]

    async def _answer_tool_calls(
        self, body: dict[str, Any], calls: list[tuple[str, str]], writer: Writer
    ) -> bool:
        """Answer with ``tool_calls`` (or a legacy ``function_call``), maybe streamed."""
        legacy = not body.get("tools")
        ids = [f"call_fake{index}_{name}" for index, (name, _) in enumerate(calls)]
        fragments = [_fragments(arguments) for _, arguments in calls]
        completion = sum(len(parts) for parts in fragments)
        finish = "function_call" if legacy else "tool_calls"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None}
            if legacy:
                message["function_call"] = {"name": calls[0][0], "arguments": calls[0][1]}
            else:
                message["tool_calls"] = [
                    {"id": ids[i], "type": "function", "function": {"name": n, "arguments": a}}
                    for i, (n, a) in enumerate(calls)
                ]
            answer = _envelope(body, "chat.completion", message=message, finish_reason=finish)
            return _respond(writer, 200, {**answer, **_usage(body, completion)})
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        base = _envelope(body, "chat.completion.chunk")

        def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choices = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
            return _sse(orjson.dumps({**base, "choices": choices}))

        writer.write(event({"role": "assistant", "content": None}))
        for index, ((name, _), parts) in enumerate(zip(calls, fragments, strict=True)):
            if legacy:
                writer.write(event({"function_call": {"name": name, "arguments": ""}}))
            else:
                head = {"id": ids[index], "type": "function"}
                function = {"name": name, "arguments": ""}
                writer.write(
                    event({"tool_calls": [{"index": index, **head, "function": function}]})
                )
            for part in parts:  # one write per fragment, as the text stream's tokens
                if legacy:
                    writer.write(event({"function_call": {"arguments": part}}))
                else:
                    delta = {"index": index, "function": {"arguments": part}}
                    writer.write(event({"tool_calls": [delta]}))
                await writer.drain()
        writer.write(event({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            writer.write(_sse(orjson.dumps({**base, **_usage(body, completion)})))
        self.completed_streams += 1
        writer.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
        await writer.drain()
        return True


_SPEECH_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


def fake_speech(body: dict[str, Any]) -> bytes:
    """The fake's "audio" for a speech request: its choices and text, repeated to ~4 KB."""
    fields = (body.get("model"), body.get("voice"), body.get("response_format") or "mp3")
    line = ("|".join(str(f) for f in fields) + "|" + str(body.get("input")) + "\n").encode()
    return line * max(1, 4096 // len(line))


def _parse_body(raw: bytes, content_type: str) -> Any:
    """JSON, multipart form data (a dict; files as ``(filename, bytes)``), else text."""
    if not raw:
        return None
    if content_type.startswith("multipart/form-data"):
        return _multipart(raw, content_type)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def _multipart(raw: bytes, content_type: str) -> dict[str, Any] | None:
    """The fields of a multipart body; repeated fields (``x[]``) become lists."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if boundary is None:
        return None
    fields: dict[str, Any] = {}
    for part in raw.split(b"--" + boundary.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, value = part.strip(b"\r\n").partition(b"\r\n\r\n")
        disposition = head.decode("utf-8", "replace")
        name = re.search(r'name="([^"]*)"', disposition)
        if name is None:
            continue
        filename = re.search(r'filename="([^"]*)"', disposition)
        item: Any = (filename.group(1), value) if filename else value.decode("utf-8", "replace")
        key = name.group(1)
        if key.endswith("[]"):
            fields.setdefault(key, []).append(item)
        else:
            fields[key] = item
    return fields


def _invalid_transcription(body: Any) -> str | None:
    """Why a transcription form is refused (400), or None."""
    if not isinstance(body, dict) or not isinstance(body.get("file"), tuple):
        return "'file' is required (multipart/form-data)"
    if not body.get("model"):
        return "'model' is required"
    if not body["file"][1]:
        return "the file is empty"
    if body.get("response_format", "json") not in ("json", "text", "verbose_json", "srt", "vtt"):
        return "'response_format' is invalid"
    return None


def _invalid_speech(body: Any) -> str | None:
    """Why a speech body is refused (400), or None."""
    if not isinstance(body, dict) or not body.get("input") or not body.get("model"):
        return "'model' and 'input' are required"
    if not body.get("voice"):
        return "'voice' is required"
    if (body.get("response_format") or "mp3") not in _SPEECH_TYPES:
        return "'response_format' is invalid"
    return None


def _respond_bytes(writer: Writer, status: int, data: bytes, content_type: str) -> bool:
    """Write a whole non-JSON response at once."""
    head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\ncontent-type: {content_type}"
    writer.write(f"{head}\r\ncontent-length: {len(data)}\r\n\r\n".encode("latin-1") + data)
    return True


def _sse(data: bytes) -> bytes:
    """One SSE event as one HTTP chunk."""
    return b"%x\r\n%s\r\n" % (len(data) + 8, b"data: " + data + b"\n\n")


def _respond(writer: Writer, status: int, payload: Any, extra: str = "") -> bool:
    """Write a whole JSON response at once; True keeps the connection."""
    data, reason = orjson.dumps(payload), _REASONS.get(status, "Unknown")
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n{extra}"
    writer.write(f"{head}content-length: {len(data)}\r\n\r\n".encode("latin-1") + data)
    return True


def _fail(writer: Writer, status: int, message: str, code: str, retry: str | None = None) -> bool:
    """An error response in OpenAI's shape, with ``Retry-After`` when given."""
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    error = {"message": message, "type": kind, "param": None, "code": code}
    return _respond(writer, status, {"error": error}, f"retry-after: {retry}\r\n" if retry else "")


def _envelope(body: dict[str, Any], kind: str, **choice: Any) -> dict[str, Any]:
    """A chat.completion(.chunk) with one choice made of ``choice`` (none if empty)."""
    created, model = int(time.time()), body.get("model") or MODELS[0]
    choices = [{"index": 0, **choice}] if choice else []
    return dict(id="chatcmpl-fake", object=kind, created=created, model=model, choices=choices)


def _invalid_chat(body: Any) -> str | None:
    """Why a chat body is refused (400), or None."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return "'messages' is required"
    return None


def _invalid_embeddings(body: Any) -> str | None:
    """Why an embeddings body is refused (400), or None: OpenAI's input shapes only."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return "'model' is required"
    if _inputs(body.get("input")) is None:
        return "'input' must be a string, a list of strings, or token ids (list or lists)"
    if body.get("encoding_format", "float") not in ("float", "base64"):
        return "'encoding_format' must be 'float' or 'base64'"
    dimensions = body.get("dimensions", EMBEDDING_DIMENSIONS)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        return "'dimensions' must be a positive integer"
    return None


def _inputs(value: Any) -> list[list[str]] | None:
    """The input as one token list per text (``#<id>`` for token ids), None if malformed."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [[f"#{v}" for v in value]]
    if all(isinstance(v, str) for v in value):
        return [_words(v) for v in value]
    if all(isinstance(v, list) and v and all(type(i) is int for i in v) for v in value):
        return [[f"#{i}" for i in v] for v in value]
    return None


def _words(text: str) -> list[str]:
    """Lowercased word tokens (what ``usage`` counts)."""
    return _WORD.findall(text.lower())


def _features(words: list[str]) -> list[str]:
    """The words plus Hangul bigrams, so "서울은" and "서울의" share the feature "서울"."""
    grams = [m[i : i + 2] for w in words for m in _HANGUL.findall(w) for i in range(len(m) - 1)]
    return words + grams


def _vector(words: list[str], dimensions: int) -> list[float]:
    """A hashed bag of features, L2-normalized (as float32); no feature: the first axis."""
    counts = [0.0] * dimensions
    for feature in _features(words):
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        counts[int.from_bytes(digest, "little") % dimensions] += 1.0
    norm = math.sqrt(sum(c * c for c in counts))
    if not norm:
        counts[0], norm = 1.0, 1.0
    return [c / norm for c in counts]


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """The embeddings response: one vector per input, float lists or base64 float32."""
    texts = _inputs(body["input"]) or []
    dimensions, b64 = body.get("dimensions", EMBEDDING_DIMENSIONS), body.get("encoding_format")
    data = []
    for index, words in enumerate(texts):
        packed = struct.pack(f"<{dimensions}f", *_vector(words, dimensions))
        vector: Any = (
            base64.b64encode(packed).decode("ascii")
            if b64 == "base64"
            else list(struct.unpack(f"<{dimensions}f", packed))  # the same float32 values
        )
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(len(words) for words in texts)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": body["model"], "usage": usage}


def _usage(body: dict[str, Any], completion: int) -> dict[str, dict[str, int]]:
    """Prompt: words of every message + 3 each (OpenAI's per-message overhead)."""
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    prompt = sum(len(str(m.get("content") or "").split()) + 3 for m in messages)
    prompt += _tool_prompt_tokens(body)
    total = prompt + completion
    return {"usage": dict(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)}


# --- tool calls and structured output (issue 13) -------------------------------------------


def _offered_functions(body: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The offered functions (``tools`` of type function, else legacy ``functions``)."""
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        functions = [t.get("function") or {} for t in tools if t.get("type") == "function"]
        return functions, False
    legacy = body.get("functions")
    return (list(legacy), True) if isinstance(legacy, list) and legacy else ([], False)


def _tool_or_structured_reply(body: dict[str, Any]) -> str | None:
    """Text for a final answer after tool results, or JSON for a response format; else None."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    form = body.get("response_format") or {}
    if form.get("type") == "json_schema":
        schema = (form.get("json_schema") or {}).get("schema") or {"type": "object"}
        return orjson.dumps(_example(schema)).decode()
    if form.get("type") == "json_object":
        # "Return a JSON with 'setup' and 'punchline' keys": those keys; else a default.
        keys = [k for k in _quoted(_last_user_text(messages)) if _WORD.fullmatch(k)]
        return orjson.dumps({k: "demo" for k in keys} or {"answer": "json"}).decode()
    results: list[str] = []
    for message in reversed(messages):
        if message.get("role") not in ("tool", "function"):
            break
        results.insert(0, str(message.get("content") or ""))
    return "tool said: " + " | ".join(results) if results else None


def _example(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """A value satisfying a (simple) JSON schema: every property, the first option."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        return _example(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _example(schema[key][0], defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _example(sub, defs) for name, sub in props.items()}
    if kind == "array":
        return [_example(schema.get("items") or {"type": "string"}, defs)]
    examples = {"string": "demo", "integer": 2, "number": 1.5, "boolean": True}
    return examples.get(kind)


def _last_user_text(messages: list[Any]) -> str:
    """The text of the last user message (its text parts, for a list content)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                parts = [p.get("text", "") for p in content if isinstance(p, dict)]
                return " ".join(p for p in parts if isinstance(p, str))
            return content if isinstance(content, str) else ""
    return ""


def _quoted(text: str) -> list[str]:
    """The phrases in single or double quotes, in order."""
    return [a or b for a, b in _QUOTED.findall(text)]


def _arguments(tool: dict[str, Any], asked: str) -> Any:
    """Arguments as a model would take them from the request, valid for the tool's schema.

    ``name(3, "x")`` in the message gives the call's values to the properties in order;
    otherwise string properties take the first quoted phrase ("a customer named 'ACME'"),
    and the rest is an example of the schema.
    """
    schema = tool.get("parameters") or {"type": "object"}
    example = _example(schema)
    if not isinstance(example, dict):
        return example
    props = list((schema.get("properties") or {}).items())
    call = re.search(rf"\b{re.escape(str(tool.get('name')))}\(([^)]*)\)", asked)
    if call is not None:
        values = [v.strip() for v in call.group(1).split(",") if v.strip()]
        for (name, _), raw in zip(props, values, strict=False):
            try:
                example[name] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                example[name] = raw.strip("'")
        return example
    phrases = _quoted(asked)
    if phrases:
        for name, sub in props:
            if isinstance(sub, dict) and sub.get("type") == "string":
                example[name] = phrases[0]
    return example


def _fragments(arguments: str) -> list[str]:
    """Argument JSON in token-like pieces (a word, or a run of punctuation), as a provider
    streams them: ``{"city":"demo"}`` → ``{"``, ``city``, ``":"``, ``demo``, ``"}``."""
    return _PIECE.findall(arguments) or [""]


def _tool_prompt_tokens(body: dict[str, Any]) -> int:
    """Tool definitions count in the prompt: their words."""
    offered = body.get("tools") or body.get("functions")
    return len(_WORD.findall(orjson.dumps(offered).decode())) if offered else 0


@pytest.fixture(scope="session")
def _fake_openai_session() -> Iterator[FakeOpenAI]:
    """One server for the whole session: a thread and a port per test would be wasted."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_openai(_fake_openai_session: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The session's fake upstream, reset before and after the test."""
    _fake_openai_session.reset()
    yield _fake_openai_session
    _fake_openai_session.reset()


def main() -> None:
    """Serve standalone until killed (benchmarks run the fake in a process of its own)."""
    parser = argparse.ArgumentParser(description="Fake OpenAI upstream.")
    parser.add_argument("--port", type=int, default=0)
    fake = FakeOpenAI(record=False).start(parser.parse_args().port)
    print(f"READY {fake.base_url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


if __name__ == "__main__":
    main()
