"""Templates that carry tools and a response format: stored with the version (and its hash),
shown by the template's routes, sent with a chat call naming the template (plain, streamed,
with a thread) unless the request offers its own, by the ``/runnables/prompt`` playground and
by evaluations (a tool-call answer is scored as its calls' JSON).

The fake upstream calls the offered tools (an example of the schema as arguments) and
answers a ``json_schema`` response format with an example of the schema.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httpx
import pytest
from langserve import RemoteRunnable

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService, ServiceFactory
from tests.support.tools import CLOCK, WEATHER, sdk

CITY = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
MESSAGES = [
    {"role": "system", "content": "You forecast."},
    {"role": "user", "content": "Weather in {city}?"},
]
NAN = float("nan")  # sent as the NaN literal, which Python's JSON parser takes
ARRAY = {"type": "array", "items": {"type": "string"}}
PARIS = {"name": "forecast", "variables": {"city": "Paris"}}


@pytest.fixture
def svc(db_services: ServiceFactory) -> RunningService:
    """The service on SQLite and on PostgreSQL."""
    return db_services.start()


def put_version(svc: RunningService, name: str = "forecast", **extra: Any) -> httpx.Response:
    body = json.dumps({"name": name, "messages": MESSAGES, **extra})  # NaN stays NaN
    return httpx.post(
        f"{svc.api}/prompt-templates",
        headers={**svc.headers(), "content-type": "application/json"},
        content=body,
    )


def created(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json())


def chat(svc: RunningService, path: str = "completions", **body: Any) -> httpx.Response:
    return httpx.post(f"{svc.api}/chat/{path}", headers=svc.headers(), json=body, timeout=30)


def sent(fake: FakeOpenAI) -> dict[str, Any]:
    """The body of the last chat request the upstream received."""
    chats = [r for r in fake.requests if r.path.endswith("/chat/completions")]
    return dict(chats[-1].body)


def streamed_tool_names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    names = []
    for line in response.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[len("data: ") :]).get("choices") or []:
                for call in choice["delta"].get("tool_calls") or []:
                    if name := call.get("function", {}).get("name"):
                        names.append(name)
    return names


def old_hash(version: dict[str, Any]) -> str:
    """The content hash as it was computed before templates carried tools."""
    canonical = json.dumps(
        {k: version[k] for k in ("messages", "template_format", "input_variables", "model")}
        | {"params": version["params"]},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- stored with the version ---------------------------------------------------------------


def test_a_version_keeps_its_tools_and_format_in_its_content(svc: RunningService) -> None:
    first = created(put_version(svc, tools=[WEATHER], response_format=CITY))
    assert (first["version"], first["tools"], first["response_format"]) == (1, [WEATHER], CITY)
    same = created(put_version(svc, tools=[WEATHER], response_format=CITY), status=200)
    assert (same["version"], same["content_hash"]) == (1, first["content_hash"])

    shown = httpx.get(f"{svc.api}/prompt-templates/forecast", headers=svc.headers()).json()
    assert (shown["tools"], shown["response_format"]) == ([WEATHER], CITY)
    rendered = httpx.post(
        f"{svc.api}/prompt-templates/forecast/render",
        headers=svc.headers(),
        json={"variables": {"city": "Oslo"}},
    ).json()
    assert (rendered["tools"], rendered["response_format"]) == ([WEATHER], CITY)

    more = created(put_version(svc, tools=[WEATHER, CLOCK], response_format=CITY))
    no_format = created(put_version(svc, tools=[WEATHER, CLOCK]))
    plain = created(put_version(svc, tools=[]))  # an empty list is no tools
    assert [more["version"], no_format["version"], plain["version"]] == [2, 3, 4]
    assert len({first["content_hash"], more["content_hash"], no_format["content_hash"]}) == 3
    assert (plain["tools"], plain["response_format"]) == (None, None)
    assert plain["content_hash"] == old_hash(plain)  # versions without them keep their hash
    versions = httpx.get(
        f"{svc.api}/prompt-templates/forecast/versions", headers=svc.headers()
    ).json()["data"]
    assert [v["tools"] for v in versions] == [None, [WEATHER, CLOCK], [WEATHER, CLOCK], [WEATHER]]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {"tools": [{"type": "function", "function": {"parameters": {}}}]},
            "tools[0].function.name",
        ),
        ({"tools": [{"type": "function", "function": {"name": " "}}]}, "tools[0].function.name"),
        ({"tools": [WEATHER, {"type": "function"}]}, "tools[1].function"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"tools": [{"function": {"name": "f", "parameters": {"x": NAN}}}]}, "tools"),
        ({"response_format": {"type": "json_object", "x": [NAN]}}, "response_format"),
        ({"tools": [{"function": {"name": "f", "parameters": {"x": 2**70}}}]}, "tools"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"schema": {"type": "array"}},
                }
            },
            "response_format.json_schema.schema",
        ),
    ],
)
def test_malformed_tools_and_formats_are_refused_like_a_chat_request(
    svc: RunningService, extra: dict[str, Any], param: str
) -> None:
    response = put_version(svc, **extra)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["param"] == param and error["message"].startswith(param)
    assert (
        httpx.get(f"{svc.api}/prompt-templates/forecast", headers=svc.headers()).status_code == 404
    )


def test_a_tool_that_is_not_an_object_is_a_422_as_in_chat(svc: RunningService) -> None:
    response = put_version(svc, tools=[WEATHER, "get_time"])
    assert response.status_code == 422, response.text
    assert "tools.1" in response.json()["error"]["message"]


# --- sent with a chat call naming the template ---------------------------------------------


def test_a_chat_call_naming_the_template_sends_its_tools(
    svc: RunningService, fake_openai: FakeOpenAI
) -> None:
    created(put_version(svc, tools=[WEATHER, CLOCK]))
    reply = chat(svc, template=PARIS)
    assert reply.status_code == 200, reply.text
    choice = reply.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent(fake_openai)["tools"] == [WEATHER, CLOCK]

    # The request's tool_choice may name one of the template's tools; streamed alike.
    choice_clock = {"type": "function", "function": {"name": "get_time"}}
    for path, extra in (("completions", {"stream": True}), ("stream", {})):
        streamed = chat(svc, path, template=PARIS, tool_choice=choice_clock, **extra)
        assert streamed_tool_names(streamed) == ["get_time"]
        assert sent(fake_openai)["tools"] == [WEATHER, CLOCK]
        assert sent(fake_openai)["tool_choice"] == choice_clock

    # ...but not a tool the template lacks.
    wrong = chat(svc, template=PARIS, tool_choice={"type": "function", "function": {"name": "x"}})
    assert wrong.status_code == 400, wrong.text
    assert wrong.json()["error"]["param"] == "tool_choice"


def test_the_request_own_tools_and_format_win(svc: RunningService, fake_openai: FakeOpenAI) -> None:
    created(put_version(svc, tools=[WEATHER], response_format=CITY))
    client = sdk(svc)
    own = client.chat.completions.create(
        model="gpt-4o-mini", messages=[], tools=[CLOCK], extra_body={"template": PARIS}
    )
    (call,) = own.choices[0].message.tool_calls or []
    assert call.function.name == "get_time"
    assert sent(fake_openai)["tools"] == [CLOCK]
    assert sent(fake_openai)["response_format"] == CITY  # not set by the request: the template's

    legacy = [{"name": "get_time", "parameters": {"type": "object", "properties": {}}}]
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[], functions=legacy, extra_body={"template": PARIS}
    )
    assert "tools" not in sent(fake_openai) and sent(fake_openai)["functions"] == legacy

    text = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[],
        tool_choice="none",
        response_format={"type": "json_object"},
        extra_body={"template": PARIS},
    )
    assert json.loads(text.choices[0].message.content or "") == {"answer": "json"}
    assert sent(fake_openai)["response_format"] == {"type": "json_object"}
    assert sent(fake_openai)["tools"] == [WEATHER]


def test_structured_output_from_the_template(svc: RunningService, fake_openai: FakeOpenAI) -> None:
    created(put_version(svc, response_format=CITY))
    reply = sdk(svc).chat.completions.create(
        model="gpt-4o-mini", messages=[], extra_body={"template": PARIS}
    )
    assert json.loads(reply.choices[0].message.content or "") == {"city": "demo"}
    assert sent(fake_openai)["response_format"] == CITY
    assert "tools" not in sent(fake_openai)


def test_a_thread_turn_naming_the_template_sends_its_tools(
    svc: RunningService, fake_openai: FakeOpenAI
) -> None:
    created(put_version(svc, tools=[WEATHER]))
    client = sdk(svc)
    first = client.chat.completions.create(
        model="gpt-4o-mini", messages=[], extra_body={"template": PARIS, "thread_id": "t-tpl"}
    )
    (call,) = first.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert sent(fake_openai)["tools"] == [WEATHER]
    result = {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
    final = client.chat.completions.create(
        model="gpt-4o-mini", messages=[result], extra_body={"thread_id": "t-tpl"}
    )
    assert final.choices[0].message.content == "tool said: sunny"
    assert "tools" not in sent(fake_openai)  # a later turn without the template: none
    assert [m["role"] for m in sent(fake_openai)["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
    ]


# --- the playground runnable ----------------------------------------------------------------


def test_the_playground_sends_the_version_tools_and_format(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    created(put_version(service, tools=[WEATHER]))
    created(put_version(service, name="city", response_format=CITY))
    prompt = RemoteRunnable(f"{service.url}/runnables/prompt", headers=service.headers())
    forecast = {"configurable": {"template": "forecast"}}
    called = [{"name": "get_weather", "args": {"city": "demo"}}]
    assert json.loads(prompt.invoke({"city": "Oslo"}, config=forecast)) == called
    assert sent(fake_openai)["tools"] == [WEATHER]
    assert json.loads("".join(prompt.stream({"city": "Oslo"}, config=forecast))) == called
    assert sent(fake_openai)["tools"] == [WEATHER] and sent(fake_openai)["stream"] is True

    city = {"configurable": {"template": "city"}}
    assert json.loads(prompt.invoke({"city": "Oslo"}, config=city)) == {"city": "demo"}
    assert sent(fake_openai)["response_format"] == CITY and "tools" not in sent(fake_openai)


# --- evaluations -----------------------------------------------------------------------------


def test_an_evaluation_sends_the_version_tools_and_scores_the_calls(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    created(put_version(service, tools=[WEATHER]))
    calls = json.dumps([{"name": "get_weather", "args": {"city": "demo"}}])
    response = httpx.post(
        f"{service.api}/prompt-templates/forecast/evaluate",
        headers=service.headers(),
        json={
            "dataset": [{"variables": {"city": "Oslo"}, "expected": calls}],
            "evaluators": ["exact"],
        },
    )
    assert response.status_code == 202, response.text
    location = f"{service.url}{response.headers['location']}"
    deadline = time.monotonic() + 60
    while (body := httpx.get(location, headers=service.headers()).json())["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
    assert body["status"] == "done", body
    (version,) = body["results"]["versions"]
    assert version["items"][0]["output"] == calls  # the tool-call answer, as its calls
    assert version["scores"]["exact"] == 1.0
    assert version["params"]["tools"] == [WEATHER]
    assert sent(fake_openai)["tools"] == [WEATHER]


def test_the_template_tools_count_in_the_limit_hold(service: RunningService) -> None:
    big = {
        "type": "function",
        "function": {"name": "big", "description": "word " * 400, "parameters": {}},
    }
    created(put_version(service, name="light"))
    created(put_version(service, name="heavy", tools=[big]))
    admin = service.headers("org-a", "boss", "admin")
    limits = {"tokens_per_minute": 300}
    assert httpx.put(f"{service.api}/limits", headers=admin, json=limits).status_code == 200
    light = {"name": "light", "variables": {"city": "Oslo"}}
    heavy = {"name": "heavy", "variables": {"city": "Oslo"}}
    assert chat(service, template=light, max_tokens=20).status_code == 200
    refused = chat(service, template=heavy, max_tokens=20)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "limit_exceeded"

    def playground(name: str) -> httpx.Response:
        return httpx.post(
            f"{service.url}/runnables/prompt/invoke",
            headers=service.headers(),
            json={
                "input": {"city": "Oslo"},
                "config": {"configurable": {"template": name, "max_tokens": 20}},
            },
            timeout=30,
        )

    assert playground("light").status_code == 200
    assert playground("heavy").status_code == 429
