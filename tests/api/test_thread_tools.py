"""Tool calling with memory: a thread keeps the tool exchange, the client sends only results.

The fake upstream calls the offered tools unless the last message is a tool result, then
answers ``tool said: <results>`` (see ``tests/api/test_tools.py``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService
from tests.support.tools import ASK, CLOCK, WEATHER, sdk


def thread_messages(service: RunningService, thread: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{service.api}/chat/threads/{thread}", headers=service.headers())
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def test_sdk_tool_loop_with_a_thread(db_services: Any, fake_openai: FakeOpenAI) -> None:
    service = db_services.start()  # SQLite and PostgreSQL checkpointers
    client = sdk(service)
    first = client.chat.completions.create(
        model="gpt-4o-mini", messages=ASK, tools=[WEATHER], extra_body={"thread_id": "t-tools"}
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "demo"}
    assert fake_openai.requests[-1].body["tools"] == [WEATHER]

    result = {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
    final = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[result],  # only the new tool result: the thread has the rest
        tools=[WEATHER],
        extra_body={"thread_id": "t-tools"},
    )
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "tool said: sunny"
    sent = fake_openai.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["id"] == call.id
    assert sent[2] == result

    stored = thread_messages(service, "t-tools")
    assert stored[0] == ASK[0]
    assert stored[1]["role"] == "assistant" and stored[1]["content"] is None
    assert stored[1]["tool_calls"] == [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": call.function.arguments},
        }
    ]
    assert stored[2] == result
    assert stored[3] == {"role": "assistant", "content": "tool said: sunny"}


def test_sdk_tool_loop_with_a_thread_streamed(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    client = sdk(service)
    fake_openai.parallel_tools = True
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=ASK,
        tools=[WEATHER, CLOCK],
        parallel_tool_calls=True,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"thread_id": "t-stream"},
    )
    calls: dict[int, dict[str, str]] = {}
    finish, usage, fragments = None, None, 0
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                slot = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] += delta.id or ""
                if delta.function is not None:
                    slot["name"] += delta.function.name or ""
                    slot["arguments"] += delta.function.arguments or ""
                    fragments += bool(delta.function.arguments)
    assert finish == "tool_calls" and usage is not None and usage.prompt_tokens > 0
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "demo"}
    assert fragments > 2

    results = [
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "noon"},
    ]
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=results,
            tools=[WEATHER, CLOCK],
            stream=True,
            extra_body={"thread_id": "t-stream"},
        )
        if chunk.choices
    )
    assert text == "tool said: sunny | noon"
    stored = thread_messages(service, "t-stream")
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "tool", "assistant"]
    assert [c["id"] for c in stored[1]["tool_calls"]] == [calls[0]["id"], calls[1]["id"]]
    assert [c["function"]["arguments"] for c in stored[1]["tool_calls"]] == [
        calls[0]["arguments"],
        calls[1]["arguments"],
    ]


def test_resent_assistant_turn_is_not_stored_twice(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    """The SDK's usual loop appends the assistant message and the results: kept once."""
    client = sdk(service)
    extra = {"thread_id": "t-resend"}
    first = client.chat.completions.create(
        model="gpt-4o-mini", messages=ASK, tools=[WEATHER], extra_body=extra
    )
    message = first.choices[0].message
    call = (message.tool_calls or [])[0]
    final = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=[WEATHER],
        extra_body=extra,
    )
    assert final.choices[0].message.content == "tool said: sunny"
    sent = fake_openai.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert [m["role"] for m in thread_messages(service, "t-resend")] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]


class CityWeather(BaseModel):
    city: str
    temperature: int


def test_structured_output_with_a_thread(service: RunningService, fake_openai: FakeOpenAI) -> None:
    client = sdk(service)
    for stream in (False, True):
        kwargs: dict[str, Any] = {"extra_body": {"thread_id": f"t-format-{stream}"}}
        if stream:
            with client.beta.chat.completions.stream(
                model="gpt-4o-mini", messages=ASK, response_format=CityWeather, **kwargs
            ) as events:
                parsed = events.get_final_completion().choices[0].message.parsed
        else:
            answer = client.chat.completions.parse(
                model="gpt-4o-mini", messages=ASK, response_format=CityWeather, **kwargs
            )
            parsed = answer.choices[0].message.parsed
        assert parsed == CityWeather(city="demo", temperature=2)
        sent = fake_openai.requests[-1].body["response_format"]
        assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "CityWeather"


def test_chat_openai_bind_tools_with_a_thread(service: RunningService) -> None:
    @tool
    def get_weather(city: str) -> str:
        """The weather of a city."""
        return f"sunny in {city}"

    model = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=service.api,
        api_key=service.token(),
        extra_body={"thread_id": "t-lc"},
    )
    bound = model.bind_tools([get_weather])
    message = bound.invoke("weather in Paris?")
    assert isinstance(message, AIMessage)
    call = message.tool_calls[0]
    assert call["name"] == "get_weather" and call["args"] == {"city": "demo"}
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    assert bound.invoke([result]).content == "tool said: sunny in demo"

    streamed = None
    for chunk in bound.stream("and in Rome?"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None and streamed.tool_calls[0]["args"] == {"city": "demo"}
    roles = [m["role"] for m in thread_messages(service, "t-lc")]
    assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant"]


def test_tool_result_must_answer_a_call_of_the_thread(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    for path in ("completions", "stream"):
        response = httpx.post(
            f"{service.api}/chat/{path}",
            headers=service.headers(),
            json={
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "tool", "tool_call_id": "call-nobody", "content": "x"},
                ],
                "thread_id": "t-orphan",
                "tools": [WEATHER],
            },
            timeout=30,
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["param"] == "messages[1].tool_call_id"
    assert not fake_openai.requests
    missing = httpx.get(f"{service.api}/chat/threads/t-orphan", headers=service.headers())
    assert missing.status_code == 404  # the refused turn created no thread


def test_thread_turn_with_tools_is_accounted(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    answer = sdk(service).chat.completions.create(
        model="gpt-4o-mini", messages=ASK, tools=[WEATHER], extra_body={"thread_id": "t-acc"}
    )
    assert answer.usage is not None and answer.usage.prompt_tokens > 3 + 3  # tools counted
    total = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and total != answer.usage.total_tokens:
        report = httpx.get(
            f"{service.api}/usage",
            headers=service.headers("org-a", "boss", "admin"),
            params={"group_by": "route"},
        ).json()
        total = sum(g["total_tokens"] for g in report["groups"])
        time.sleep(0.1)
    assert total == answer.usage.total_tokens


def test_models_list_says_what_each_model_is_for(service: RunningService) -> None:
    listed = sdk(service).models.list()
    cards = {m.id: (m.model_extra or {}) for m in listed.data}
    assert listed.data[0].id == "gpt-4o-mini"  # the default chat model first
    assert cards["gpt-4o-mini"]["capabilities"] == ["chat", "tools", "structured_output"]
    assert "dimensions" not in cards["gpt-4o-mini"]
    assert cards["local"]["capabilities"] == ["chat", "embeddings"]
    assert cards["local-e5"] == {"capabilities": ["embeddings"], "dimensions": 384}
    assert cards["text-embedding-3-small"] == {"capabilities": ["embeddings"], "dimensions": 1536}
    embedding = [i for i, c in cards.items() if "embeddings" in c["capabilities"]]
    assert {"local", "local-e5", "text-embedding-3-small"} <= set(embedding)
    vectors = sdk(service).embeddings.create(model="local", input="hello")
    assert len(vectors.data[0].embedding) == cards["local"]["dimensions"]
