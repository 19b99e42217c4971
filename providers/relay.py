"""A lean relay for the OpenAI-compatible routes: the request goes upstream almost as is.

Why not ``ChatOpenAI`` here: LangChain's per-chunk callback machinery costs ~0.6 ms per
streamed token, more than the whole budget of a gateway. The relay forwards the client's
body (model name swapped, ``stream_options.include_usage`` forced on so usage is always
known), returns the upstream bytes unchanged, and reads the usage on the way through.
Retries (timeouts, 429, 5xx; exponential backoff with jitter, honouring ``Retry-After``)
happen before the first byte reaches the client, with tenacity.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

from core.config import Settings
from core.errors import ApiError, error_body
from providers.errors import (
    RETRYABLE_STATUS,
    UpstreamStatusError,
    map_status,
    map_transport,
    parse_retry_after,
    upstream_message,
)
from providers.registry import ModelRoute

_DONE = b"data: [DONE]"


@dataclass(slots=True)
class RelayOutcome:
    """What one relayed call produced, for accounting: usage as the provider reported it."""

    route: ModelRoute
    started: float = field(default_factory=time.perf_counter)
    usage: dict[str, Any] | None = None
    completed: bool = False
    error: str | None = None
    content_chunks: int = 0
    text: list[str] | None = None
    """The streamed content, collected only when asked (to cache a streamed answer)."""
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    """The streamed tool calls, merged by index (collected with the text)."""
    function_call: dict[str, str] | None = None
    """The streamed legacy function call, merged (collected with the text)."""


OutcomeHook = Callable[[RelayOutcome], None]


class _RetryAfterOrBackoff(wait_base):
    """Wait what the upstream asked for, else exponential backoff with jitter (capped)."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)
        self._max = maximum

    def __call__(self, retry_state: Any) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, UpstreamStatusError) and exc.retry_after is not None:
            return min(exc.retry_after, self._max)
        return float(self._backoff(retry_state))


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, UpstreamStatusError):
        return exc.status_code in RETRYABLE_STATUS
    return isinstance(
        exc, TimeoutError | aiohttp.ClientConnectionError | aiohttp.ClientPayloadError
    )


class OpenAIRelay:
    """Forwards chat completion bodies to an OpenAI-compatible upstream (one pooled client).

    The transport is aiohttp: measured here, httpx/httpcore took half of the service's CPU
    per relayed request; aiohttp's C-accelerated client takes a fraction of that.
    Build it inside the running event loop (the app's lifespan).
    """

    def __init__(self, settings: Settings) -> None:
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=10.0, sock_read=settings.upstream_timeout_seconds
            ),
            auto_decompress=True,
        )
        self._attempts = settings.upstream_max_retries + 1
        self._wait = _RetryAfterOrBackoff(
            settings.upstream_backoff_seconds, settings.upstream_backoff_max_seconds
        )

    async def aclose(self) -> None:
        """Close pooled connections (lifespan shutdown)."""
        await self._client.close()

    @staticmethod
    def _request(route: ModelRoute, body: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
        headers = {
            "Authorization": f"Bearer {route.upstream.api_key}",
            "Content-Type": "application/json",
        }
        if route.upstream.organization:
            headers["OpenAI-Organization"] = route.upstream.organization
        try:
            content = orjson.dumps({**body, "model": route.upstream_model})
        except TypeError as exc:  # e.g. an integer beyond 64 bits in a pass-through field
            raise ApiError(400, "invalid_request", f"the request cannot be encoded: {exc}") from exc
        return f"{route.upstream.base_url}/chat/completions", content, headers

    async def _send(self, route: ModelRoute, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """Send with retries; returns a 2xx response whose body is not read yet."""
        url, content, headers = self._request(route, body)
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=self._wait,
                retry=retry_if_exception(_retryable),
                reraise=True,
            ):
                with attempt:
                    response = await self._client.post(url, data=content, headers=headers)
                    if response.status >= 400:
                        error_body_bytes = await response.read()
                        response.release()
                        raise UpstreamStatusError(
                            response.status,
                            upstream_message(error_body_bytes),
                            parse_retry_after(response.headers),
                        )
                    return response
        except UpstreamStatusError as exc:
            raise map_status(
                route.upstream.provider, exc.status_code, exc.message, exc.retry_after
            ) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise map_transport(route.upstream.provider, exc) from exc
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    async def complete(self, route: ModelRoute, body: dict[str, Any]) -> tuple[bytes, RelayOutcome]:
        """One non-streamed completion: the upstream's JSON bytes and the outcome."""
        outcome = RelayOutcome(route=route)
        response = await self._send(route, body)
        try:
            content = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise map_transport(route.upstream.provider, exc) from exc
        finally:
            response.release()
        outcome.completed = True
        try:
            outcome.usage = orjson.loads(content).get("usage")
        except (orjson.JSONDecodeError, AttributeError) as exc:
            raise ApiError(
                502, "upstream_error", f"{route.upstream.provider} sent an invalid response"
            ) from exc
        return content, outcome

    async def open_stream(
        self,
        route: ModelRoute,
        body: dict[str, Any],
        *,
        include_usage: bool,
        on_done: OutcomeHook | None = None,
        collect_text: bool = False,
    ) -> AsyncIterator[bytes]:
        """Open the upstream stream now and return the client's SSE events.

        Opening here means upstream errors raise before any byte is sent to the client.
        """
        upstream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        outcome = RelayOutcome(route=route, text=[] if collect_text else None)
        response = await self._send(route, upstream_body)
        return self._relay(response, outcome, include_usage, on_done)

    async def _relay(
        self,
        response: aiohttp.ClientResponse,
        outcome: RelayOutcome,
        include_usage: bool,
        on_done: OutcomeHook | None,
    ) -> AsyncIterator[bytes]:
        buffer = b""
        try:
            async for raw in response.content.iter_any():
                buffer += raw.replace(b"\r\n", b"\n") if b"\r" in raw else raw
                if b"\n\n" not in buffer:
                    continue
                *events, buffer = buffer.split(b"\n\n")
                out = [e for e in (self._event(e, outcome, include_usage) for e in events) if e]
                if out:
                    yield b"".join(out)
            if buffer.strip():
                if tail := self._event(buffer, outcome, include_usage):
                    yield tail
        except (TimeoutError, aiohttp.ClientError) as exc:
            error = map_transport(outcome.route.upstream.provider, exc)
            outcome.error = error.code
            yield (
                b"data: "
                + orjson.dumps(error_body(error.code, error.message, error.status_code))
                + b"\n\n"
            )
        finally:
            if outcome.completed:
                response.release()  # back to the pool
            else:
                response.close()  # client gone or upstream broke: drop the connection
            if on_done is not None:
                on_done(outcome)

    @staticmethod
    def _event(event: bytes, outcome: RelayOutcome, include_usage: bool) -> bytes:
        """One SSE event on its way to the client.

        Notes usage and completion, and drops the usage chunk the client did not ask for.
        """
        event = event.strip(b"\n")
        if not event:
            return b""
        if event.startswith(_DONE):
            outcome.completed = True
            return event + b"\n\n"
        if b'"content":"' in event and b'"content":""' not in event:
            outcome.content_chunks += 1
        if outcome.text is not None and event.startswith(b"data:"):
            for choice in orjson.loads(event[5:]).get("choices") or []:
                delta = choice.get("delta") or {}
                outcome.text.append(delta.get("content") or "")
                outcome.finish_reason = choice.get("finish_reason") or outcome.finish_reason
                if delta.get("tool_calls") or delta.get("function_call"):
                    merge_call_pieces(outcome, delta)
        if b'"usage"' in event and event.startswith(b"data:"):
            chunk = orjson.loads(event[5:])
            usage = chunk.get("usage")
            if usage:
                outcome.usage = usage
                if not include_usage:
                    if not chunk.get("choices"):
                        return b""
                    chunk.pop("usage")
                    return b"data: " + orjson.dumps(chunk) + b"\n\n"
        return event + b"\n\n"


def merge_call_pieces(outcome: RelayOutcome, delta: dict[str, Any]) -> None:
    """Merge a delta's tool-call pieces (by index) and function-call pieces into ``outcome``."""
    for piece in delta.get("tool_calls") or []:
        calls = outcome.tool_calls = outcome.tool_calls or []
        index = piece.get("index", len(calls))
        while len(calls) <= index:
            calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        call = calls[index]
        if piece.get("id"):
            call["id"] = piece["id"]
        if piece.get("type"):
            call["type"] = piece["type"]
        function = piece.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""
    if legacy := delta.get("function_call"):
        merged = outcome.function_call = outcome.function_call or {"name": "", "arguments": ""}
        merged["name"] += legacy.get("name") or ""
        merged["arguments"] += legacy.get("arguments") or ""
