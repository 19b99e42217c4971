"""Chat Completions SSE re-told as Responses events (``services.responses.stream``), offline.

Each case feeds chat chunks (split at awkward byte boundaries, as a network would) and
checks the events against the openai SDK's own event types and its stream accumulator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from services.responses.objects import ResponseShell
from services.responses.request import ResponseRequest
from services.responses.stream import translate

_EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None) -> bytes:
    choices = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    return b"data: " + orjson.dumps({"object": "chat.completion.chunk", "choices": choices})


USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}'


def call(index: int, **fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **fields}]}


async def _chat(events: list[bytes], cut: int) -> AsyncIterator[bytes]:
    raw = b"".join(e + b"\n\n" for e in events)
    for start in range(0, len(raw), cut):
        yield raw[start : start + cut]


def run(events: list[bytes], *, cut: int = 7, fail_store: bool = False) -> list[dict[str, Any]]:
    stored: list[dict[str, Any]] = []

    async def finished(body: dict[str, Any]) -> None:
        if fail_store:
            raise RuntimeError("database down")
        stored.append(body)

    async def collect() -> list[dict[str, Any]]:
        shell = ResponseShell(ResponseRequest(input="hi"), model="gpt-4o-mini")
        out = b"".join([part async for part in translate(_chat(events, cut), shell, finished)])
        parsed = []
        for block in out.decode().strip().split("\n\n"):
            event_line, data_line = block.split("\n")
            data = json.loads(data_line.removeprefix("data: "))
            assert event_line == f"event: {data['type']}"
            parsed.append(data)
        return parsed

    parsed = asyncio.run(collect())
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for data in parsed:
        state.handle_event(_EVENTS.validate_python(data))  # raises on a malformed sequence
    if parsed[-1]["type"] in ("response.completed", "response.incomplete"):
        assert stored == ([] if fail_store else [parsed[-1]["response"]])
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    return parsed


@pytest.mark.parametrize("cut", [1, 7, 4096])
def test_text_then_tool_calls(cut: int) -> None:
    events = run(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Let me "}),
            chunk({"content": "check."}),
            chunk(call(0, id="call_a", type="function", function={"name": "f", "arguments": ""})),
            chunk(call(0, function={"arguments": '{"x":'})),
            chunk(call(0, function={"arguments": "1}"})),
            chunk(call(1, id="call_b", type="function", function={"name": "g", "arguments": "{}"})),
            chunk(finish="tool_calls"),
            USAGE,
            b"data: [DONE]",
        ],
        cut=cut,
    )
    kinds = [e["type"] for e in events]
    # the message is closed before the first call opens; each call before the next
    assert kinds.index("response.output_item.done") < kinds.index(
        "response.function_call_arguments.delta"
    )
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert [item["type"] for item in final["output"]] == [
        "message",
        "function_call",
        "function_call",
    ]
    assert final["output"][0]["content"][0]["text"] == "Let me check."
    assert [(i["call_id"], i["arguments"]) for i in final["output"][1:]] == [
        ("call_a", '{"x":1}'),
        ("call_b", "{}"),
    ]
    assert final["usage"]["input_tokens"] == 7 and final["usage"]["total_tokens"] == 12


def test_a_length_stop_is_incomplete() -> None:
    events = run([chunk({"content": "cut sh"}), chunk(finish="length"), USAGE, b"data: [DONE]"])
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["output"][0]["status"] == "incomplete"


def test_an_upstream_error_fails_the_response() -> None:
    error = b'data: {"error":{"code":"upstream_timeout","message":"openai timed out"}}'
    events = run([chunk({"content": "par"}), error])
    failed = events[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "openai timed out"}
    assert failed["response"]["output"][0]["content"][0]["text"] == "par"  # what had arrived


def test_a_stream_without_done_fails() -> None:
    events = run([chunk({"content": "par"})])
    assert events[-1]["type"] == "response.failed"


def test_a_response_that_cannot_be_stored_fails() -> None:
    events = run([chunk({"content": "ok"}), chunk(finish="stop"), b"data: [DONE]"], fail_store=True)
    assert events[-1]["type"] == "response.failed"
    assert "stored" in events[-1]["response"]["error"]["message"]


def test_an_empty_answer_is_one_empty_message() -> None:
    events = run([chunk(finish="stop"), b"data: [DONE]"])
    (item,) = events[-1]["response"]["output"]
    assert item["type"] == "message" and item["content"][0]["text"] == ""
