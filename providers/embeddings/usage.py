"""Real usage, captured from the HTTP responses: how accounting bills OpenAI's tokens.

LangChain's ``OpenAIEmbeddings`` discards the response's ``usage``. The clients built here
carry an httpx response hook that adds ``usage.prompt_tokens`` to the tally of the
surrounding :func:`measure_usage` block, which is how accounting bills real tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

import orjson


@dataclass(slots=True)
class UsageTally:
    """Provider usage seen during one :func:`measure_usage` block."""

    prompt_tokens: int = 0
    responses: int = 0  # successful responses
    reported: int = 0  # ... of which carried ``usage.prompt_tokens``

    @property
    def complete(self) -> bool:
        """Whether every successful response reported its usage (then it is exact)."""
        return self.responses > 0 and self.reported == self.responses


_tally: ContextVar[UsageTally | None] = ContextVar("embedding_usage_tally", default=None)


@contextlib.contextmanager
def measure_usage() -> Iterator[UsageTally]:
    """Collect the provider usage of the embedding calls made inside the block."""
    tally = UsageTally()
    token = _tally.set(tally)
    try:
        yield tally
    finally:
        _tally.reset(token)


class _Response(Protocol):
    """The part of an httpx (or httpx2) response the hooks use."""

    @property
    def is_success(self) -> bool: ...

    @property
    def content(self) -> bytes: ...

    def read(self) -> bytes: ...

    async def aread(self) -> bytes: ...


def _note_usage(tally: UsageTally, body: bytes) -> None:
    """Add one successful response's ``usage.prompt_tokens`` (if any) to ``tally``."""
    tally.responses += 1
    try:
        tokens = orjson.loads(body).get("usage", {}).get("prompt_tokens")
    except (orjson.JSONDecodeError, AttributeError):
        return
    if isinstance(tokens, int) and not isinstance(tokens, bool):
        tally.prompt_tokens += tokens
        tally.reported += 1


def _usage_hook(response: _Response) -> None:
    """Sync clients' response hook (reads the body, which the SDK then reuses)."""
    tally = _tally.get()
    if tally is not None and response.is_success:
        _note_usage(tally, response.read())


async def _ausage_hook(response: _Response) -> None:
    """Async clients' response hook."""
    tally = _tally.get()
    if tally is not None and response.is_success:
        _note_usage(tally, await response.aread())
