"""Tool calling and structured output through the stateless chat path, with real clients.

The fake upstream calls the offered tools (an example of each schema as arguments) unless
the last message is a tool result, then answers ``tool said: <results>``; with a
``json_schema`` response format it answers an example of the schema.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService
from tests.support.tools import ASK, CLOCK, WEATHER, sdk


def post(
    service: RunningService, body: dict[str, Any], path: str = "completions"
) -> httpx.Response:
    return httpx.post(
        f"{service.api}/chat/{path}", headers=service.headers(), json=body, timeout=30
    )


def run_weather(arguments: str) -> str:
    return f"sunny in {json.loads(arguments)['city']}"


# --- the openai SDK's tool loop ------------------------------------------------------------


def test_sdk_tool_loop(service: RunningService, fake_openai: FakeOpenAI) -> None:
    client = sdk(service)
    messages: list[Any] = list(ASK)
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    upstream = fake_openai.requests[-1].body
    assert upstream["tools"] == [WEATHER]  # unchanged

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append(
        {"role": "tool", "tool_call_id": call.id, "content": run_weather(call.function.arguments)}
    )
    final = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "tool said: sunny in demo"
    sent = fake_openai.requests[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id and "content" not in sent[1]
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny in demo"}


def test_sdk_tool_loop_streamed(service: RunningService, fake_openai: FakeOpenAI) -> None:
    client = sdk(service)
    fake_openai.parallel_tools = True
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=ASK,
        tools=[WEATHER, CLOCK],
        tool_choice="auto",
        parallel_tool_calls=True,
        stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict[str, str]] = {}
    finish, usage, fragments = None, None, 0
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
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
    assert fragments > 2  # the provider's argument fragments arrived as they were sent

    messages: list[Any] = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {k: c[k] for k in ("name", "arguments")},
                }
                for c in calls.values()
            ],
        },
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "noon"},
    ]
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, tools=[WEATHER, CLOCK], stream=True
        )
        if chunk.choices
    )
    assert text == "tool said: sunny | noon"


def test_raw_stream_passes_tool_call_deltas_then_done(service: RunningService) -> None:
    response = post(
        service,
        {"messages": ASK, "tools": [WEATHER], "tool_choice": "required"},
        path="stream",
    )
    assert response.status_code == 200, response.text
    events = [e for e in response.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    deltas = [d for c in chunks for ch in c["choices"] for d in ch["delta"].get("tool_calls", [])]
    assert deltas[0]["id"] and deltas[0]["function"]["name"] == "get_weather"
    assert "".join(d["function"]["arguments"] for d in deltas) == '{"city":"demo"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_named_tool_choice_and_legacy_functions(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    client = sdk(service)
    named = {"type": "function", "function": {"name": "get_time"}}
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=ASK, tools=[WEATHER, CLOCK], tool_choice=named
    )
    assert answer.choices[0].message.tool_calls[0].function.name == "get_time"  # type: ignore[index]
    assert fake_openai.requests[-1].body["tool_choice"] == named

    legacy = post(
        service,
        {
            "messages": ASK,
            "functions": [WEATHER["function"]],
            "function_call": {"name": "get_weather"},
        },
    )
    assert legacy.status_code == 200, legacy.text
    choice = legacy.json()["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"]["name"] == "get_weather"
    assert fake_openai.requests[-1].body["function_call"] == {"name": "get_weather"}


# --- structured output -----------------------------------------------------------------------


class CityWeather(BaseModel):
    city: str
    temperature: int
    tags: list[str]


def test_sdk_parse_with_pydantic(service: RunningService, fake_openai: FakeOpenAI) -> None:
    completion = sdk(service).chat.completions.parse(
        model="gpt-4o-mini", messages=ASK, response_format=CityWeather
    )
    parsed = completion.choices[0].message.parsed
    assert parsed == CityWeather(city="demo", temperature=2, tags=["demo"])
    sent = fake_openai.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True


def test_sdk_stream_helper_with_pydantic_and_tools(service: RunningService) -> None:
    client = sdk(service)
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=ASK, response_format=CityWeather
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == CityWeather(city="demo", temperature=2, tags=["demo"])

    weather = openai.pydantic_function_tool(CityWeather, name="get_weather")
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=ASK, tools=[weather]
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == CityWeather(city="demo", temperature=2, tags=["demo"])


def test_chat_openai_bind_tools_and_structured_output(service: RunningService) -> None:
    @tool
    def get_weather(city: str) -> str:
        """The weather of a city."""
        return f"sunny in {city}"

    model = ChatOpenAI(model="gpt-4o-mini", base_url=service.api, api_key=service.token())
    bound = model.bind_tools([get_weather])
    message = bound.invoke("weather in Paris?")
    assert isinstance(message, AIMessage)
    assert message.tool_calls[0]["name"] == "get_weather"
    assert message.tool_calls[0]["args"] == {"city": "demo"}

    streamed = None
    for chunk in bound.stream("weather in Paris?"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None and streamed.tool_calls[0]["args"] == {"city": "demo"}

    call = message.tool_calls[0]
    history = [
        HumanMessage("weather in Paris?"),
        message,
        ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]),
    ]
    assert bound.invoke(history).content == "tool said: sunny in demo"

    for method in ("json_schema", "function_calling"):
        structured = model.with_structured_output(CityWeather, method=method)  # type: ignore[arg-type]
        assert structured.invoke("weather?") == CityWeather(
            city="demo", temperature=2, tags=["demo"]
        )


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_langgraph_react_agent(service: RunningService) -> None:
    from langgraph.prebuilt import create_react_agent

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    model = ChatOpenAI(model="gpt-4o-mini", base_url=service.api, api_key=service.token())
    agent = create_react_agent(model, [add])
    result = agent.invoke({"messages": [("user", "what is 2 + 2?")]})
    messages = result["messages"]
    assert messages[-2].content == "4"  # the tool ran on the model's arguments
    assert messages[-1].content == "tool said: 4"


# --- validation --------------------------------------------------------------------------------


def _assistant_call(call_id: str = "call_1") -> dict[str, Any]:
    function = {"name": "get_weather", "arguments": "{}"}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": function}],
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"messages": [*ASK, {"role": "tool", "tool_call_id": "call_x", "content": "r"}]},
            "messages[1].tool_call_id",
        ),
        (
            {
                "messages": [
                    *ASK,
                    _assistant_call("call_1"),
                    {"role": "tool", "tool_call_id": "call_2", "content": "r"},
                ],
                "tools": [WEATHER],
            },
            "messages[2].tool_call_id",
        ),
        (
            {"messages": [*ASK, {"role": "tool", "content": "r"}], "tools": [WEATHER]},
            "messages[1].tool_call_id",
        ),
        (
            {"messages": ASK, "tools": [{"type": "function", "function": {"parameters": {}}}]},
            "tools[0].function.name",
        ),
        (
            {"messages": ASK, "tools": [{"type": "function", "function": {"name": ""}}]},
            "tools[0].function.name",
        ),
        ({"messages": ASK, "functions": [{"description": "nameless"}]}, "functions[0].name"),
        (
            {
                "messages": ASK,
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "launch"}},
            },
            "tool_choice",
        ),
        (
            {"messages": ASK, "functions": [WEATHER["function"]], "function_call": {"name": "x"}},
            "function_call",
        ),
        (
            {
                "messages": ASK,
                "response_format": {"type": "json_schema", "json_schema": "an object please"},
            },
            "response_format.json_schema",
        ),
        (
            {
                "messages": ASK,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "string"}},
                },
            },
            "response_format.json_schema.schema",
        ),
        (
            {
                "messages": ASK,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": ["not", "an", "object"]},
                },
            },
            "response_format.json_schema.schema",
        ),
    ],
)
@pytest.mark.parametrize("path", ["completions", "stream"])
def test_invalid_tool_requests_name_the_field(
    service: RunningService, fake_openai: FakeOpenAI, body: dict[str, Any], param: str, path: str
) -> None:
    response = post(service, body, path)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["param"] == param and error["message"].startswith(param)
    assert not fake_openai.requests  # refused before the upstream


def test_local_model_cannot_call_tools(service: RunningService, fake_openai: FakeOpenAI) -> None:
    response = post(service, {"model": "local", "messages": ASK, "tools": [WEATHER]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_parameter"
    assert "'local'" in error["message"] and "gpt-4o-mini" in error["message"]
    assert not fake_openai.requests
    plain = post(service, {"model": "local", "messages": ASK})
    assert plain.status_code == 200  # the same model without tools is fine


# --- accounting, limits, cache ----------------------------------------------------------------


def _usage_by_route(service: RunningService) -> dict[str, dict[str, Any]]:
    report = httpx.get(
        f"{service.api}/usage",
        headers=service.headers("org-a", "boss", "admin"),
        params={"group_by": "route"},
    )
    assert report.status_code == 200, report.text
    return {g["key"]: g for g in report.json()["groups"]}


def _org_tokens(service: RunningService) -> int:
    counters = service.app.state.services.limits.counters
    values = getattr(counters, "_values", {})
    return sum(v for k, (v, _e) in values.items() if k.startswith("org:org-a:tokens_per_day"))


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_are_accounted_and_limited(
    service: RunningService, fake_openai: FakeOpenAI, stream: bool
) -> None:
    admin = service.headers("org-a", "boss", "admin")
    org_key = "sk-org-a-own-key-1234"
    assert (
        httpx.put(
            f"{service.api}/provider-keys/openai", headers=admin, json={"api_key": org_key}
        ).status_code
        == 200
    )
    limits = {"tokens_per_day": 10**9, "requests_per_minute": 10**6}
    assert httpx.put(f"{service.api}/limits", headers=admin, json=limits).status_code == 200
    body = {"messages": ASK, "tools": [WEATHER], "stream": stream, "temperature": 0}
    answer = post(service, {**body, "stream_options": {"include_usage": True}} if stream else body)
    assert answer.status_code == 200, answer.text
    assert fake_openai.requests[-1].headers["authorization"] == f"Bearer {org_key}"
    if stream:
        usage = json.loads(answer.text.split("\n\n")[-3][6:])["usage"]
    else:
        usage = answer.json()["usage"]
    assert usage["prompt_tokens"] > 3 + 3  # the fake counts the tool definitions' words
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        route = _usage_by_route(service).get("chat.completions")
        if route and _org_tokens(service) == route["total_tokens"]:
            break
        time.sleep(0.1)
    assert route is not None
    assert route["total_tokens"] == usage["total_tokens"] and route["requests"] == 1
    assert _org_tokens(service) == usage["total_tokens"]


def _streamed_calls(response: httpx.Response) -> tuple[list[dict[str, Any]], str | None]:
    """The tool calls of a raw SSE answer, merged as a client merges them, and the finish."""
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    for event in response.text.split("\n\n"):
        if not event.startswith("data: {"):
            continue
        for choice in json.loads(event[6:])["choices"]:
            finish = choice.get("finish_reason") or finish
            for piece in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(
                    piece["index"],
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = piece.get("id") or call["id"]
                function = piece.get("function") or {}
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""
    return [calls[i] for i in sorted(calls)], finish


def test_cached_tool_answer_replays_its_calls(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    body = {"messages": ASK, "tools": [WEATHER], "temperature": 0}
    first = post(service, body)
    time.sleep(0.2)
    again = post(service, body)
    assert again.content == first.content  # exactly the stored answer
    streamed = post(service, {**body, "stream": True})
    calls, finish = _streamed_calls(streamed)
    assert calls == first.json()["choices"][0]["message"]["tool_calls"]
    assert finish == "tool_calls" and streamed.text.endswith("data: [DONE]\n\n")
    assert len(fake_openai.requests) == 1  # the two repeats came from the cache


def test_streamed_tool_answer_is_cached_with_its_calls(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.parallel_tools = True
    body = {"messages": ASK, "tools": [WEATHER, CLOCK], "temperature": 0}
    first = post(service, {**body, "stream": True})
    calls, finish = _streamed_calls(first)
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    time.sleep(0.2)
    plain = post(service, body).json()["choices"][0]
    assert plain["finish_reason"] == finish == "tool_calls"
    assert plain["message"]["tool_calls"] == calls and plain["message"]["content"] is None
    replayed, _ = _streamed_calls(post(service, {**body, "stream": True}))
    assert replayed == calls
    client_calls = sdk(service).chat.completions.create(
        model="gpt-4o-mini", messages=ASK, tools=[WEATHER, CLOCK], temperature=0
    )
    assert [c.id for c in client_calls.choices[0].message.tool_calls or []] == [
        c["id"] for c in calls
    ]
    assert len(fake_openai.requests) == 1


def test_tool_requests_skip_the_semantic_cache(services: Any, fake_openai: FakeOpenAI) -> None:
    cached = services.start(semantic_cache_enabled=True, semantic_cache_embedding_model="local-use")
    ask = {
        "messages": [{"role": "user", "content": "What is the weather in Paris today?"}],
        "temperature": 0,
    }
    rephrased = {
        "messages": [{"role": "user", "content": "what is the weather in Paris today"}],
        "temperature": 0,
    }
    assert post(cached, ask).status_code == 200
    time.sleep(0.3)
    assert post(cached, rephrased).status_code == 200
    assert len(fake_openai.requests) == 1  # without tools: a semantic hit
    assert post(cached, {**ask, "tools": [WEATHER]}).status_code == 200
    time.sleep(0.3)
    assert post(cached, {**rephrased, "tools": [WEATHER]}).status_code == 200
    assert len(fake_openai.requests) == 3  # with tools: never


def test_tool_definitions_count_in_the_limit_hold(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    admin = service.headers("org-a", "boss", "admin")
    big = {
        "type": "function",
        "function": {"name": "big", "description": "word " * 400, "parameters": {"type": "object"}},
    }
    limits = {"tokens_per_minute": 300}
    assert httpx.put(f"{service.api}/limits", headers=admin, json=limits).status_code == 200
    small = post(service, {"messages": ASK, "max_tokens": 50})
    assert small.status_code == 200, small.text
    refused = post(service, {"messages": ASK, "tools": [big], "max_tokens": 50})
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "limit_exceeded"
