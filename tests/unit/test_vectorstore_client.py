"""The Chroma client is built once, and a waiter that gives up does not throw the build away."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.config import Settings
from core.vectorstore import ChromaClientProvider


async def test_a_probe_timeout_keeps_the_build_going(tmp_path: Path) -> None:
    provider = ChromaClientProvider(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    build = provider.start()
    with pytest.raises(TimeoutError):  # a readiness probe with no time left
        await asyncio.wait_for(provider.get(), 0)
    assert not build.cancelled() and not provider.ready
    client = await provider.get()
    assert provider.ready and provider.start() is build  # the same build, not a second one
    assert await provider.get() is client
    await provider.heartbeat()
    assert (tmp_path / "chroma").is_dir()
