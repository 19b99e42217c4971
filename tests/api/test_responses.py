"""The Responses API (``/api/responses``) over the chat path, driven by the real clients.

The fake upstream speaks Chat Completions: it answers ``echo: <last user message>``, calls
the offered tools (an example of each schema as arguments) unless the last message is a
tool result, then answers ``tool said: <results>``; with a ``json_schema`` format it answers
an example of the schema. Answers are validated against the openai SDK's own types.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai.types.responses import Response as SdkResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService, ServiceFactory
from tests.support.tools import sdk

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather of a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CLOCK = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}
ASK = "weather in Paris?"
SCHEMA_FORMAT = {"type": "json_schema", "name": "answer"}
_EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


class CityWeather(BaseModel):
    city: str
    temperature: int
    tags: list[str]


def post(
    service: RunningService, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(
        f"{service.api}/responses", headers=headers or service.headers(), json=body, timeout=30
    )


def sse_events(text: str) -> list[dict[str, Any]]:
    """The data of each event of a raw SSE body, checked against the SDK's event types."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        _EVENTS.validate_python(data)
        events.append(data)
    return events


# --- plain text --------------------------------------------------------------------------------


def test_plain_text_answer_is_a_response_object(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    response = post(service, {"model": "gpt-4o-mini", "input": "hello there"})
    assert response.status_code == 200, response.text
    body = response.json()
    parsed = SdkResponse.model_validate(body)  # the SDK's own type, every required field
    assert parsed.id.startswith("resp_") and parsed.object == "response"
    assert parsed.status == "completed" and parsed.model == "gpt-4o-mini"
    assert parsed.output_text == "echo: hello there"
    (item,) = parsed.output
    assert item.type == "message" and item.role == "assistant" and item.id.startswith("msg_")
    assert body["output"][0]["content"][0]["annotations"] == []
    usage = parsed.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens == 3
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    sent = fake_openai.requests[-1].body
    assert sent["messages"] == [{"role": "user", "content": "hello there"}]


def test_sdk_create_with_instructions(service: RunningService, fake_openai: FakeOpenAI) -> None:
    answer = sdk(service).responses.create(
        model="gpt-4o-mini",
        instructions="Answer briefly.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        temperature=0.5,
        max_output_tokens=50,
        metadata={"ticket": "T-1"},
    )
    assert answer.output_text == "echo: hi"
    assert answer.instructions == "Answer briefly." and answer.metadata == {"ticket": "T-1"}
    assert answer.temperature == 0.5 and answer.max_output_tokens == 50
    sent = fake_openai.requests[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "hi"},  # text-only parts are joined
    ]
    assert sent["temperature"] == 0.5 and sent["max_tokens"] == 50
    assert "metadata" not in sent  # ours, not the provider's


# --- function calling ----------------------------------------------------------------------------


def test_function_call_round_trip_with_previous_response_id(
    db_services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    client = sdk(db_services.start())
    first = client.responses.create(model="gpt-4o-mini", input=ASK, tools=[WEATHER])
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "demo"}
    assert call.call_id.startswith("call_") and (call.id or "").startswith("fc_")
    upstream = fake_openai.requests[-1].body
    assert upstream["tools"] == [
        {"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}
    ]

    final = client.responses.create(
        model="gpt-4o-mini",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],
    )
    assert final.output_text == "tool said: sunny"
    assert final.previous_response_id == first.id
    sent = fake_openai.requests[-1].body["messages"]
    assert sent[0] == {"role": "user", "content": ASK}
    assert sent[1]["role"] == "assistant" and sent[1]["tool_calls"][0]["id"] == call.call_id
    assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}

    # a third turn continues from the second: the whole chain, in order
    client.responses.create(model="gpt-4o-mini", previous_response_id=final.id, input="thanks")
    sent = fake_openai.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[3]["content"] == "tool said: sunny"


def test_function_call_round_trip_sending_the_items_back(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    client = sdk(service)
    fake_openai.parallel_tools = True
    first = client.responses.create(
        model="gpt-4o-mini", input=ASK, tools=[WEATHER, CLOCK], store=False
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    items: list[Any] = [{"role": "user", "content": ASK}]
    items += [c.model_dump(exclude_none=True) for c in first.output]
    items += [
        {"type": "function_call_output", "call_id": c.call_id, "output": f"{c.name} ok"}
        for c in calls
    ]
    final = client.responses.create(
        model="gpt-4o-mini", input=items, tools=[WEATHER, CLOCK], store=False
    )
    assert final.output_text == "tool said: get_weather ok | get_time ok"
    sent = fake_openai.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == [c.call_id for c in calls]


def test_named_tool_choice(service: RunningService, fake_openai: FakeOpenAI) -> None:
    answer = sdk(service).responses.create(
        model="gpt-4o-mini",
        input=ASK,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "name": "get_time"},
    )
    assert [item.type for item in answer.output] == ["function_call"]
    assert answer.output[0].name == "get_time"  # type: ignore[union-attr]
    sent = fake_openai.requests[-1].body
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}


# --- streaming ---------------------------------------------------------------------------------


def test_sdk_stream_text(service: RunningService, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = "one two three four"
    client = sdk(service)
    with client.responses.stream(model="gpt-4o-mini", input="count") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) == 4 and "".join(deltas) == "one two three four"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert final.output_text == "one two three four" and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens == 4


def test_sdk_stream_function_call_arguments(
    db_services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    client = sdk(db_services.start())
    fake_openai.parallel_tools = True
    with client.responses.stream(
        model="gpt-4o-mini", input=ASK, tools=[WEATHER, CLOCK], parallel_tool_calls=True
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    fragments = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(fragments) > 2  # the provider's argument fragments arrive as sent
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [json.loads(e.arguments) for e in done] == [{"city": "demo"}, {}]
    calls = [item for item in final.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].arguments) == {"city": "demo"}

    # the streamed response was stored: continue from it, streamed again
    with client.responses.stream(
        model="gpt-4o-mini",
        previous_response_id=final.id,
        input=[
            {"type": "function_call_output", "call_id": c.call_id, "output": c.name} for c in calls
        ],
        tools=[WEATHER, CLOCK],
    ) as stream:
        answer = stream.get_final_response()
    assert answer.output_text == "tool said: get_weather | get_time"


def test_raw_stream_events_match_the_sdk_types(service: RunningService) -> None:
    response = post(service, {"input": ASK, "tools": [WEATHER], "stream": True})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    added = next(e for e in events if e["type"] == "response.output_item.added")
    done = next(e for e in events if e["type"] == "response.output_item.done")
    assert added["item"]["status"] == "in_progress" and done["item"]["status"] == "completed"
    assert added["item"]["call_id"] == done["item"]["call_id"]
    completed = events[-1]
    assert completed["type"] == "response.completed"
    SdkResponse.model_validate(completed["response"])
    assert completed["response"]["output"] == [done["item"]]


def test_stream_errors_before_the_first_event_are_json(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail_next(status=400)
    response = post(service, {"input": "hi", "stream": True})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["message"]


def test_upstream_breaking_off_mid_stream_fails_the_response(
    services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    service = services.start(upstream_timeout_seconds=0.3, upstream_max_retries=0)
    fake_openai.token_delay = 1.0  # past the read timeout, after the first chunk
    response = post(service, {"input": "hello there", "stream": True})
    assert response.status_code == 200  # the stream had begun
    events = sse_events(response.text)
    failed = events[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "server_error"
    assert not any(e["type"] == "response.completed" for e in events)
    rid = failed["response"]["id"]
    assert httpx.get(f"{service.api}/responses/{rid}", headers=service.headers()).status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/responses"), ("GET", "/responses/resp_1"), ("DELETE", "/responses/resp_1")],
)
def test_missing_token_is_401(service: RunningService, method: str, path: str) -> None:
    response = httpx.request(method, service.api + path, json={"input": "x"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"


# --- structured output ---------------------------------------------------------------------------


def test_sdk_parse_with_pydantic(service: RunningService, fake_openai: FakeOpenAI) -> None:
    answer = sdk(service).responses.parse(
        model="gpt-4o-mini", input="weather as JSON", text_format=CityWeather
    )
    assert answer.output_parsed == CityWeather(city="demo", temperature=2, tags=["demo"])
    sent = fake_openai.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "CityWeather"
    assert sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"]["required"] == ["city", "temperature", "tags"]


def test_sdk_stream_with_pydantic_format(service: RunningService) -> None:
    with sdk(service).responses.stream(
        model="gpt-4o-mini", input="weather as JSON", text_format=CityWeather
    ) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == CityWeather(city="demo", temperature=2, tags=["demo"])


def test_json_object_format(service: RunningService, fake_openai: FakeOpenAI) -> None:
    response = post(service, {"input": "hi", "text": {"format": {"type": "json_object"}}})
    assert response.status_code == 200, response.text
    assert response.json()["text"] == {"format": {"type": "json_object"}}
    assert fake_openai.requests[-1].body["response_format"] == {"type": "json_object"}


# --- stored responses ----------------------------------------------------------------------------


def test_get_delete_and_isolation(db_services: ServiceFactory, fake_openai: FakeOpenAI) -> None:
    service = db_services.start()
    created = post(service, {"input": "keep me", "metadata": {"k": "v"}}).json()
    rid = created["id"]
    client = sdk(service)
    assert client.responses.retrieve(rid).output_text == "echo: keep me"
    own = httpx.get(f"{service.api}/responses/{rid}", headers=service.headers())
    assert own.status_code == 200 and own.json() == created

    strangers = [service.headers("org-a", "bob"), service.headers("org-b", "alice")]
    for headers in strangers:
        for method in ("GET", "DELETE"):
            answer = httpx.request(method, f"{service.api}/responses/{rid}", headers=headers)
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["code"] == "response_not_found"
        followup = post(service, {"input": "go on", "previous_response_id": rid}, headers)
        assert followup.status_code == 404
        assert followup.json()["error"]["param"] == "previous_response_id"
    requests = len(fake_openai.requests)

    deleted = httpx.delete(f"{service.api}/responses/{rid}", headers=service.headers())
    assert deleted.status_code == 200
    assert deleted.json() == {"id": rid, "object": "response.deleted", "deleted": True}
    assert httpx.get(f"{service.api}/responses/{rid}", headers=service.headers()).status_code == 404
    assert post(service, {"input": "more", "previous_response_id": rid}).status_code == 404
    assert len(fake_openai.requests) == requests  # refused before the upstream
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_unknown")


def test_concurrent_responses_are_all_stored(db_services: ServiceFactory) -> None:
    service = db_services.start()
    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda i: post(service, {"input": f"n{i}"}).json(), range(16)))
    for i, body in enumerate(created):  # saved together (group commit), each its own row
        stored = httpx.get(f"{service.api}/responses/{body['id']}", headers=service.headers())
        assert stored.status_code == 200 and stored.json()["output"][0]["content"][0]["text"] == (
            f"echo: n{i}"
        )


def test_store_false_keeps_nothing(db_services: ServiceFactory) -> None:
    service = db_services.start()
    created = post(service, {"input": "forget me", "store": False}).json()
    assert created["status"] == "completed" and created["store"] is False
    rid = created["id"]
    assert httpx.get(f"{service.api}/responses/{rid}", headers=service.headers()).status_code == 404
    assert post(service, {"input": "and?", "previous_response_id": rid}).status_code == 404
    streamed = post(service, {"input": "forget me too", "store": False, "stream": True})
    rid = sse_events(streamed.text)[-1]["response"]["id"]
    assert httpx.get(f"{service.api}/responses/{rid}", headers=service.headers()).status_code == 404


# --- accounting --------------------------------------------------------------------------------


def _usage_by_route(service: RunningService) -> dict[str, dict[str, Any]]:
    report = httpx.get(
        f"{service.api}/usage",
        headers=service.headers("org-a", "boss", "admin"),
        params={"group_by": "route"},
    )
    assert report.status_code == 200, report.text
    return {g["key"]: g for g in report.json()["groups"]}


@pytest.mark.parametrize("stream", [False, True])
def test_usage_events_on_the_responses_route(service: RunningService, stream: bool) -> None:
    answer = post(service, {"input": ASK, "tools": [WEATHER], "stream": stream})
    assert answer.status_code == 200, answer.text
    body = sse_events(answer.text)[-1]["response"] if stream else answer.json()
    usage = body["usage"]
    assert usage["input_tokens"] > 3 + 3  # the fake counts the tool definitions' words
    route: dict[str, Any] | None = None
    deadline = time.monotonic() + 15  # usage events are written off the request path, batched
    while route is None and time.monotonic() < deadline:
        route = _usage_by_route(service).get("responses")
        time.sleep(0.05)
    assert route is not None
    assert route["requests"] == 1 and route["total_tokens"] == usage["total_tokens"]
    assert route["prompt_tokens"] == usage["input_tokens"]
    assert "chat.completions" not in _usage_by_route(service)


def test_limits_apply(service: RunningService, fake_openai: FakeOpenAI) -> None:
    admin = service.headers("org-a", "boss", "admin")
    limits = {"requests_per_minute": 1}
    assert httpx.put(f"{service.api}/limits", headers=admin, json=limits).status_code == 200
    answers = [post(service, {"input": f"n{i}"}) for i in range(3)]
    statuses = [a.status_code for a in answers]
    assert statuses[0] == 200 and 429 in statuses, statuses  # one minute boundary may fall between
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "limit_exceeded"
    assert len(fake_openai.requests) == statuses.count(200)  # refused before the upstream


def test_cached_answer_is_a_new_response(service: RunningService, fake_openai: FakeOpenAI) -> None:
    body = {"input": ASK, "tools": [WEATHER], "temperature": 0}
    first, second = post(service, body).json(), post(service, body).json()
    assert len(fake_openai.requests) == 1  # the second came from the response cache
    assert first["id"] != second["id"]
    assert first["output"][0]["call_id"] == second["output"][0]["call_id"]
    streamed = sse_events(post(service, {**body, "stream": True}).text)[-1]["response"]
    assert len(fake_openai.requests) == 1
    assert streamed["output"][0]["arguments"] == first["output"][0]["arguments"]


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({}, "input"),
        ({"input": [{"type": "web_search_call", "id": "x"}]}, "input[0].type"),
        ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
        (
            {"input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]},
            "input[0].call_id",
        ),
        ({"input": "hi", "tools": [{"type": "function", "parameters": {}}]}, "tools[0].name"),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        (
            {"input": "hi", "tools": [WEATHER], "tool_choice": {"type": "function", "name": "x"}},
            "tool_choice.name",
        ),
        (
            {"input": "hi", "text": {"format": {**SCHEMA_FORMAT, "schema": {"type": "array"}}}},
            "text.format.schema",
        ),
        ({"input": "hi", "text": {"format": {"type": "json_schema"}}}, "text.format.name"),
        ({"input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"input": "hi", "conversation": "conv_1"}, "conversation"),
        ({"input": "hi", "frobnicate": True}, "frobnicate"),
    ],
)
def test_invalid_requests_name_the_field(
    service: RunningService, fake_openai: FakeOpenAI, body: dict[str, Any], param: str
) -> None:
    response = post(service, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"].startswith(param)
    assert not fake_openai.requests  # refused before the upstream


def test_harmless_client_fields_are_ignored(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    body = {
        "input": "hi",
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "low"},
        "stream_options": {"include_obfuscation": False},
        "truncation": "disabled",
        "background": False,
    }
    assert post(service, body).status_code == 200
    assert set(fake_openai.requests[-1].body) == {"messages", "model"}


def test_local_model_cannot_call_tools(service: RunningService, fake_openai: FakeOpenAI) -> None:
    response = post(service, {"model": "local", "input": ASK, "tools": [WEATHER]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_parameter" and "'local'" in error["message"]
    assert not fake_openai.requests
    assert post(service, {"model": "local", "input": ASK}).status_code == 200


# --- LangChain ---------------------------------------------------------------------------------


def test_chat_openai_with_the_responses_api(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    model = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=service.api,
        api_key=service.token(),  # type: ignore[arg-type]
        use_responses_api=True,
        max_retries=0,
    )
    reply = model.invoke("hello")
    assert reply.text == "echo: hello"
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 2
    assert str(reply.response_metadata["id"]).startswith("resp_")

    chunks = list(model.stream("stream me"))
    assert "".join(c.text for c in chunks) == "echo: stream me"
    assert sum((c.usage_metadata or {}).get("output_tokens", 0) for c in chunks) == 3

    @tool
    def get_weather(city: str) -> str:
        """The weather of a city."""
        return f"sunny in {city}"

    with_tools = model.bind_tools([get_weather])
    ask = HumanMessage(ASK)
    call = with_tools.invoke([ask])
    (tool_call,) = call.tool_calls
    assert tool_call["name"] == "get_weather" and tool_call["args"] == {"city": "demo"}
    result = ToolMessage(get_weather.invoke(tool_call["args"]), tool_call_id=tool_call["id"])
    final = with_tools.invoke([ask, call, result])
    assert final.text == "tool said: sunny in demo"

    streamed = None
    for chunk in with_tools.stream([ask]):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None
    assert [c["name"] for c in streamed.tool_calls] == ["get_weather"]  # type: ignore[attr-defined]


def test_chat_openai_structured_output_and_previous_response_id(
    db_services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    service = db_services.start()
    model = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=service.api,
        api_key=service.token(),  # type: ignore[arg-type]
        use_responses_api=True,
        max_retries=0,
    )
    structured = model.with_structured_output(CityWeather)
    assert structured.invoke("weather as JSON") == CityWeather(
        city="demo", temperature=2, tags=["demo"]
    )

    chained = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=service.api,
        api_key=service.token(),  # type: ignore[arg-type]
        use_responses_api=True,
        use_previous_response_id=True,
        max_retries=0,
    )
    history: list[Any] = [HumanMessage("first question")]
    history.append(chained.invoke(history))
    history.append(HumanMessage("second question"))
    assert chained.invoke(history).text == "echo: second question"
    request = fake_openai.requests[-1]
    sent = request.body["messages"]  # the service rebuilt the chain from the stored response
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == "echo: first question"


def test_langgraph_react_agent_on_the_responses_api(service: RunningService) -> None:
    from langgraph.prebuilt import create_react_agent

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    model = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=service.api,
        api_key=service.token(),  # type: ignore[arg-type]
        use_responses_api=True,
        max_retries=0,
    )
    agent = create_react_agent(model, [add])
    result = agent.invoke({"messages": [("user", "what is 2 + 2?")]})
    messages = result["messages"]
    assert messages[-2].content == "4"  # the tool ran on the model's arguments
    assert messages[-1].text == "tool said: 4"


def test_input_items_of_a_stored_response(db_services: ServiceFactory) -> None:
    service = db_services.start()
    client = sdk(service)
    first = client.responses.create(model="gpt-4o-mini", input=ASK, tools=[WEATHER])
    (call,) = first.output
    assert call.type == "function_call"
    second = client.responses.create(
        model="gpt-4o-mini",
        previous_response_id=first.id,
        input=[
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
            {"role": "user", "content": "and the time?"},
        ],
        tools=[WEATHER],
    )
    page = client.responses.input_items.list(second.id, order="asc")  # its own input only
    kinds = [(item.type, getattr(item, "role", None)) for item in page.data]
    assert kinds == [("function_call_output", None), ("message", "user")]
    assert all(item.id for item in page.data) and not page.has_more
    assert page.data[1].content[0].text == "and the time?"  # type: ignore[union-attr]
    newest = client.responses.input_items.list(second.id, limit=1)  # desc by default
    assert [item.type for item in newest.data] == ["message"] and newest.has_more
    rest = client.responses.input_items.list(second.id, limit=1, after=newest.data[0].id)
    assert [item.type for item in rest.data] == ["function_call_output"] and not rest.has_more
    first_items = client.responses.input_items.list(first.id).data
    assert [item.content[0].text for item in first_items] == [ASK]  # type: ignore[union-attr]
    stranger = httpx.get(
        f"{service.api}/responses/{second.id}/input_items", headers=service.headers("org-b")
    )
    assert stranger.status_code == 404
