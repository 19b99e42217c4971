"""The relay reports usage for accounting, whatever the client asked for."""

from __future__ import annotations

from pathlib import Path

from core.config import Settings
from providers.registry import ModelRoute, Upstream
from providers.relay import OpenAIRelay, RelayOutcome
from tests.fakes.openai_server import FakeOpenAI


def route(fake: FakeOpenAI) -> ModelRoute:
    return ModelRoute("gpt-4o-mini", "gpt-4o-mini", Upstream("openai", fake.base_url, "sk-x"))


def relay(tmp_path: Path) -> OpenAIRelay:
    return OpenAIRelay(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]


async def test_stream_usage_reaches_the_hook_even_when_hidden_from_the_client(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    outcomes: list[RelayOutcome] = []
    client = relay(tmp_path)
    body = {"messages": [{"role": "user", "content": "a b c"}]}
    events = await client.open_stream(
        route(fake_openai), body, include_usage=False, on_done=outcomes.append
    )
    raw = b"".join([chunk async for chunk in events])
    await client.aclose()
    assert b'"usage"' not in raw and raw.endswith(b"data: [DONE]\n\n")
    assert outcomes[0].completed
    assert outcomes[0].usage == {"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10}


async def test_plain_completion_outcome(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    client = relay(tmp_path)
    content, outcome = await client.complete(
        route(fake_openai), {"messages": [{"role": "user", "content": "x"}]}
    )
    await client.aclose()
    assert b"echo: x" in content
    assert outcome.usage and outcome.usage["completion_tokens"] == 2
