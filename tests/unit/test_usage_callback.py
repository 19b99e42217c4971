"""The usage callback: finished, failed and abandoned model calls (item 5 of issue 17)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk

from accounting.callbacks import UsageCallbackHandler
from accounting.events import CallContext, UsageRecord
from accounting.pricing import PriceTable

PROMPT = [HumanMessage("tell me a long story")]


class SlowFakeChat(GenericFakeChatModel):
    """Streams one word per chunk, slowly (so a consumer can stop it mid-way)."""

    delay: float = 0.01

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for word in "one two three four five six seven eight nine ten".split():
            await asyncio.sleep(self.delay)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


def _model() -> SlowFakeChat:
    return SlowFakeChat(messages=iter([AIMessage("unused")]), metadata={"model": "gpt-4o-mini"})


@pytest.fixture
def recorded() -> list[UsageRecord]:
    return []


@pytest.fixture
def handler(recorded: list[UsageRecord]) -> UsageCallbackHandler:
    context = CallContext(org_id="org-a", user_id="alice", route="test")
    return UsageCallbackHandler(
        context, sink=recorded.append, prices=PriceTable(), provider_of=lambda m: "openai"
    )


def _start(handler: UsageCallbackHandler, chunks: int) -> uuid.UUID:
    run_id = uuid.uuid4()
    handler.on_chat_model_start({}, [PROMPT], run_id=run_id, metadata={"model": "gpt-4o-mini"})
    for i in range(chunks):
        handler.on_llm_new_token(f"w{i}", run_id=run_id)
    handler.on_llm_new_token("", run_id=run_id)  # the closing empty chunk is not a token
    return run_id


@pytest.mark.parametrize("error", [asyncio.CancelledError(), GeneratorExit()])
def test_a_stopped_call_records_what_it_delivered(
    handler: UsageCallbackHandler, recorded: list[UsageRecord], error: BaseException
) -> None:
    run_id = _start(handler, 50)
    handler.on_llm_error(error, run_id=run_id)
    [record] = recorded
    assert record.status == "ok" and record.error_code is None
    assert record.estimated is True
    assert record.completion_tokens == 50
    assert record.prompt_tokens > 0
    assert record.cost_usd > 0


def test_a_failed_call_is_an_error_without_tokens(
    handler: UsageCallbackHandler, recorded: list[UsageRecord]
) -> None:
    run_id = _start(handler, 3)
    handler.on_llm_error(RuntimeError("upstream broke"), run_id=run_id)
    [record] = recorded
    assert (record.status, record.error_code, record.total_tokens) == ("error", "RuntimeError", 0)


def test_abandon_records_calls_in_flight_once(
    handler: UsageCallbackHandler, recorded: list[UsageRecord]
) -> None:
    run_id = _start(handler, 7)
    handler.abandon()
    handler.abandon()
    handler.on_llm_error(asyncio.CancelledError(), run_id=run_id)  # reported late: not twice
    [record] = recorded
    assert (record.status, record.estimated, record.completion_tokens) == ("ok", True, 7)


def test_abandon_without_calls_records_nothing(
    handler: UsageCallbackHandler, recorded: list[UsageRecord]
) -> None:
    handler.abandon()
    assert recorded == []


async def test_a_stream_closed_by_its_consumer_is_accounted(
    handler: UsageCallbackHandler, recorded: list[UsageRecord]
) -> None:
    stream = _model().astream(PROMPT, {"callbacks": [handler]})
    received = 0
    async for _chunk in stream:
        received += 1
        if received == 4:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    [record] = recorded
    assert (record.status, record.estimated, record.completion_tokens) == ("ok", True, 4)


async def test_a_cancelled_stream_task_is_accounted(
    handler: UsageCallbackHandler, recorded: list[UsageRecord]
) -> None:
    received = asyncio.Event()
    seen = 0

    async def consume() -> None:
        nonlocal seen
        async for _chunk in _model().astream(PROMPT, {"callbacks": [handler]}):
            seen += 1
            if seen == 3:
                received.set()

    task = asyncio.create_task(consume())
    await received.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    handler.abandon()  # what the service does after cancelling: nothing left to add
    [record] = recorded
    assert record.status == "ok" and record.estimated
    assert 3 <= record.completion_tokens <= 4


async def test_a_finished_stream_is_accounted_once(
    handler: UsageCallbackHandler, recorded: list[UsageRecord]
) -> None:
    chunks = [c async for c in _model().astream(PROMPT, {"callbacks": [handler]})]
    assert len(chunks) >= 10
    handler.abandon()  # nothing in flight any more
    [record] = recorded
    assert record.status == "ok" and record.completion_tokens > 0
