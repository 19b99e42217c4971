"""Prompt templates used by name: chat (plain, stream, batch, threads), the response cache,
RAG answer prompts, the usage events (CSV export), and the ``/runnables/prompt`` playground
runnable through ``langserve.RemoteRunnable``.

The fake OpenAI upstream answers "echo: <last user message>", and records what it was sent.
"""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import httpx
import orjson
import pytest
from langserve import RemoteRunnable

from tests.fakes.openai_server import FakeOpenAI
from tests.support.knowledge import upload
from tests.support.service import RunningService, ServiceFactory

VPN_DOC = (
    "IT handbook. The office VPN client is GlobalProtect. Connect to vpn.example.com with "
    "your SSO login. The helpdesk phone extension is 4242."
)
VPN_QUESTION = "Which VPN client do we use?"


# --- helpers ------------------------------------------------------------------------------


def create(
    svc: RunningService,
    name: str,
    messages: list[dict[str, Any]],
    *,
    org: str = "org-a",
    **extra: Any,
) -> dict[str, Any]:
    response = httpx.post(
        f"{svc.api}/prompt-templates",
        headers=svc.headers(org),
        json={"name": name, "messages": messages, **extra},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def greet(svc: RunningService, text: str = "Say hello to {name}.", **extra: Any) -> int:
    """A version of the ``greet`` template; its number."""
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}]
    return int(create(svc, "greet", messages, **extra)["version"])


def set_label(svc: RunningService, name: str, label: str, version: int) -> None:
    response = httpx.put(
        f"{svc.api}/prompt-templates/{name}/labels/{label}",
        headers=svc.headers(),
        json={"version": version},
    )
    assert response.status_code == 200, response.text


def chat(
    svc: RunningService, *, org: str = "org-a", path: str = "completions", **body: Any
) -> httpx.Response:
    return httpx.post(f"{svc.api}/chat/{path}", headers=svc.headers(org), json=body, timeout=30)


def answer(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def streamed_text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    text = ""
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunk = orjson.loads(line[len("data: ") :])
            for choice in chunk.get("choices") or []:
                text += choice["delta"].get("content") or ""
    return text


def sent(fake: FakeOpenAI) -> dict[str, Any]:
    """The body of the last chat request the upstream received."""
    chats = [r for r in fake.requests if r.path.endswith("/chat/completions")]
    return dict(chats[-1].body)


def chat_calls(fake: FakeOpenAI) -> int:
    return sum(r.path.endswith("/chat/completions") for r in fake.requests)


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = dict(response.json()["error"])
    assert body["code"] and body["message"]
    return body


def code(response: httpx.Response, status: int) -> str:
    return str(error(response, status)["code"])


def usage_rows(svc: RunningService, count: int, org: str = "org-a") -> list[dict[str, str]]:
    """The org's usage events from the CSV export, once ``count`` of them are written."""
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(
            f"{svc.api}/usage/export",
            params={"format": "csv"},
            headers=svc.headers(org, "root", "admin"),
        )
        assert response.status_code == 200, response.text
        rows = list(csv.DictReader(io.StringIO(response.text)))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def templates_of(rows: list[dict[str, str]], route: str) -> list[tuple[str, str]]:
    return sorted((r["template_name"], r["template_version"]) for r in rows if r["route"] == route)


def remote(svc: RunningService, org: str = "org-a") -> RemoteRunnable:
    return RemoteRunnable(f"{svc.url}/runnables/prompt", headers=svc.headers(org))


# --- chat ---------------------------------------------------------------------------------


def test_chat_plain_stream_batch_and_usage_csv(
    db_services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    svc = db_services.start()
    assert greet(svc, model="gpt-4", params={"temperature": 0.3}) == 1
    ref = {"name": "greet", "variables": {"name": "Bob"}}

    # The rendered template is the whole conversation; its model and params apply.
    assert answer(chat(svc, template=ref)) == "echo: Say hello to Bob."
    body = sent(fake_openai)
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello to Bob."},
    ]
    assert (body["model"], body["temperature"]) == ("gpt-4", 0.3)
    assert "template" not in body  # our extension never goes upstream

    # Given messages follow the rendered ones; the request's model and params win.
    follow = [{"role": "user", "content": "And Alice?"}]
    reply = chat(svc, template=ref, messages=follow, model="gpt-4o", temperature=1)
    assert answer(reply) == "echo: And Alice?"
    body = sent(fake_openai)
    assert [m["content"] for m in body["messages"]] == [
        "You are terse.",
        "Say hello to Bob.",
        "And Alice?",
    ]
    assert (body["model"], body["temperature"]) == ("gpt-4o", 1)
    assert reply.json()["model"] == "gpt-4o"

    # Streams: /api/chat/stream and stream=true on /completions.
    assert streamed_text(chat(svc, path="stream", template=ref)) == "echo: Say hello to Bob."
    assert streamed_text(chat(svc, template=ref, stream=True)) == "echo: Say hello to Bob."

    # Batch items: each with its own template, errors per item.
    batch = chat(
        svc,
        path="batch",
        requests=[
            {"template": {"name": "greet", "version": 1, "variables": {"name": "Eve"}}},
            {"template": {"name": "nope"}},
            {"template": {"name": "greet"}},
            {"template": {"name": "summarize", "variables": {"text": "Long text."}}},
        ],
    )
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert results[0]["response"]["choices"][0]["message"]["content"] == "echo: Say hello to Eve."
    assert (results[1]["error"]["status"], results[1]["error"]["code"]) == (
        404,
        "template_not_found",
    )
    assert "nope" in results[1]["error"]["message"]
    assert (results[2]["error"]["status"], results[2]["error"]["code"]) == (
        422,
        "missing_variables",
    )
    summary = results[3]["response"]["choices"][0]["message"]["content"]
    assert summary == "echo: Summarize the following text:\n\nLong text."

    # Every call's usage event names the template version (the failed items made no call).
    rows = usage_rows(svc, 6)
    assert len(rows) == 6
    assert templates_of(rows, "chat.completions") == [("greet", "1")] * 3
    assert templates_of(rows, "chat.stream") == [("greet", "1")]
    assert templates_of(rows, "chat.batch") == [("greet", "1"), ("summarize", "1")]


def test_versions_labels_and_defaults(service: RunningService, fake_openai: FakeOpenAI) -> None:
    greet(service)
    greet(service, text="Say goodbye to {name}.", params={"max_tokens": 7, "seed": 3})
    vars_ = {"variables": {"name": "Bob"}}
    # No version or label: the latest (no production label yet).
    assert answer(chat(service, template={"name": "greet", **vars_})) == "echo: Say goodbye to Bob."
    body = sent(fake_openai)
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 7
    assert body["seed"] == 3
    # A reply cap given under either name wins over the template's.
    answer(chat(service, template={"name": "greet", **vars_}, max_completion_tokens=5))
    body = sent(fake_openai)
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 5
    # The production label, once set, is what a name alone means.
    set_label(service, "greet", "production", 1)
    assert answer(chat(service, template={"name": "greet", **vars_})) == "echo: Say hello to Bob."
    set_label(service, "greet", "staging", 2)
    staged = chat(service, template={"name": "greet", "label": "staging", **vars_})
    assert answer(staged) == "echo: Say goodbye to Bob."
    pinned = chat(service, template={"name": "greet", "version": 2, **vars_})
    assert answer(pinned) == "echo: Say goodbye to Bob."
    rows = usage_rows(service, 5)
    assert templates_of(rows, "chat.completions") == [
        ("greet", "1"),
        ("greet", "2"),
        ("greet", "2"),
        ("greet", "2"),
        ("greet", "2"),
    ]


def test_template_errors(service: RunningService) -> None:
    greet(service)
    vars_ = {"name": "Bob"}
    unknown = error(chat(service, template={"name": "missing-one"}), 404)
    assert unknown["code"] == "template_not_found" and "missing-one" in unknown["message"]
    nine = {"name": "greet", "version": 9, "variables": vars_}
    assert code(chat(service, template=nine), 404) == "version_not_found"
    qa = {"name": "greet", "label": "qa", "variables": vars_}
    assert code(chat(service, template=qa), 404) == "label_not_found"
    both = chat(service, template={"name": "greet", "version": 1, "label": "x"})
    assert "not both" in error(both, 422)["message"]
    missing = error(chat(service, template={"name": "greet"}), 422)
    assert missing["code"] == "missing_variables" and "name" in missing["message"]
    extra = error(
        chat(service, template={"name": "greet", "variables": {"name": "B", "nmae": "x"}}), 422
    )
    assert extra["code"] == "unexpected_variables" and "nmae" in extra["message"]
    typed = {"name": "greet", "variables": {"name": [1]}}
    assert code(chat(service, template=typed), 422) == "invalid_variables"
    # Another org's template does not exist for this org; streams fail before the first byte.
    other_org = chat(service, org="org-b", template={"name": "greet", "variables": vars_})
    assert code(other_org, 404) == "template_not_found"
    assert code(chat(service, path="stream", template={"name": "nope"}), 404) == (
        "template_not_found"
    )
    # Without a template, messages are still required.
    assert code(chat(service), 400) == "missing_messages"


def test_cache_key_is_the_rendered_messages(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    greet(service, params={"temperature": 0})  # deterministic by default: cached
    bob = {"name": "greet", "variables": {"name": "Bob"}}
    first = chat(service, template=bob)
    second = chat(service, template=bob)
    assert answer(first) == answer(second) == "echo: Say hello to Bob."
    assert chat_calls(fake_openai) == 1
    # Other variables render other messages: another entry.
    assert answer(chat(service, template={**bob, "variables": {"name": "Eve"}})) == (
        "echo: Say hello to Eve."
    )
    assert chat_calls(fake_openai) == 2
    # The same messages sent without the template hit the same entry (same upstream body).
    plain = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello to Bob."},
    ]
    assert answer(chat(service, messages=plain, temperature=0)) == "echo: Say hello to Bob."
    assert chat_calls(fake_openai) == 2
    # A streamed hit is replayed, and accounted with the template.
    assert streamed_text(chat(service, template=bob, stream=True)) == "echo: Say hello to Bob."
    assert chat_calls(fake_openai) == 2
    rows = usage_rows(service, 5)
    hits = [(r["template_name"], r["template_version"]) for r in rows if r["cached"] == "True"]
    assert sorted(hits) == [("", ""), ("greet", "1"), ("greet", "1")]


def test_thread_turn_is_the_rendered_template(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    greet(service)
    ref = {"name": "greet", "variables": {"name": "Bob"}}
    assert answer(chat(service, template=ref, thread_id="tpl-1")) == "echo: Say hello to Bob."
    again = chat(service, messages=[{"role": "user", "content": "Again?"}], thread_id="tpl-1")
    assert answer(again) == "echo: Again?"
    assert [m["content"] for m in sent(fake_openai)["messages"]] == [
        "You are terse.",
        "Say hello to Bob.",
        "echo: Say hello to Bob.",
        "Again?",
    ]
    detail = httpx.get(f"{service.api}/chat/threads/tpl-1", headers=service.headers()).json()
    assert detail["title"] == "Say hello to Bob."
    assert [m["role"] for m in detail["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    # A later turn's template: its system message replaces the thread's.
    create(service, "strict", [{"role": "system", "content": "Be strict."}])
    turn = chat(
        service,
        template={"name": "strict"},
        messages=[{"role": "user", "content": "Last one"}],
        thread_id="tpl-1",
        stream=True,
    )
    assert streamed_text(turn) == "echo: Last one"
    messages = sent(fake_openai)["messages"]
    assert messages[0] == {"role": "system", "content": "Be strict."}
    assert [m["role"] for m in messages].count("system") == 1
    rows = usage_rows(service, 3)
    assert templates_of(rows, "chat.completions") == [("", ""), ("greet", "1"), ("strict", "1")]


# --- RAG ----------------------------------------------------------------------------------


def ask(svc: RunningService, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{svc.api}/knowledge/query",
        headers=svc.headers(),
        json={"question": VPN_QUESTION, **body},
        timeout=60,
    )


def test_rag_answer_prompt_from_a_template(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    uploaded = upload(service, [("it.txt", VPN_DOC.encode())])
    assert uploaded.status_code == 201, uploaded.text
    create(
        service,
        "short-answer",
        [
            {"role": "system", "content": "Facts:\n{context}"},
            {"role": "placeholder", "content": "{history}"},
            {"role": "user", "content": "Q: {question}"},
        ],
        model="gpt-4o",
        params={"temperature": 0.2},
    )
    fake_openai.reply = "GlobalProtect [1]."
    response = ask(service, template={"name": "short-answer"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == "GlobalProtect [1]." and body["model"] == "gpt-4o"
    assert [c["filename"] for c in body["citations"]] == ["it.txt"]
    upstream = sent(fake_openai)
    assert upstream["messages"][0]["content"].startswith("Facts:\n[1] (it.txt)")
    assert upstream["messages"][-1] == {"role": "user", "content": f"Q: {VPN_QUESTION}"}
    assert (upstream["model"], upstream["temperature"]) == ("gpt-4o", 0.2)

    # Streamed, with the request's model winning; the starter by name; the default.
    with httpx.stream(
        "POST",
        f"{service.api}/knowledge/query",
        headers=service.headers(),
        json={
            "question": VPN_QUESTION,
            "stream": True,
            "model": "gpt-4o-mini",
            "template": {"name": "short-answer", "version": 1},
        },
        timeout=60,
    ) as streamed:
        assert streamed.status_code == 200
        events = [line for line in streamed.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert sent(fake_openai)["model"] == "gpt-4o-mini"
    assert ask(service, template={"name": "rag-answer"}).status_code == 200
    assert "don't know" in sent(fake_openai)["messages"][0]["content"]
    assert ask(service).status_code == 200

    rows = usage_rows(service, 9)  # the upload's and each question's embedding, 4 answers
    answers = [r for r in rows if r["route"] == "knowledge.query" and r["model"] != "local-e5use"]
    assert sorted((r["template_name"], r["template_version"]) for r in answers) == [
        ("", ""),  # the built-in default
        ("rag-answer", "1"),
        ("short-answer", "1"),
        ("short-answer", "1"),
    ]
    embeddings = [r for r in rows if r["model"] == "local-e5use"]
    assert len(embeddings) == 5 and {r["template_name"] for r in embeddings} == {""}


def test_rag_template_errors(service: RunningService) -> None:
    create(
        service,
        "toned",
        [
            {"role": "system", "content": "{tone} {context}"},
            {"role": "user", "content": "{question}"},
        ],
    )
    toned = error(ask(service, template={"name": "toned"}), 422)
    assert toned["code"] == "invalid_answer_prompt"
    assert "'toned' version 1" in toned["message"] and "got tone" in toned["message"]
    assert toned["name"] == "toned" and toned["version"] == 1
    create(service, "no-context", [{"role": "user", "content": "{question}"}])
    missing = error(ask(service, template={"name": "no-context"}), 422)
    assert missing["code"] == "invalid_answer_prompt" and "{context}" in missing["message"]
    examples = [
        {"role": "system", "content": "{context}"},
        {"role": "placeholder", "content": "{examples}"},
        {"role": "user", "content": "{question}"},
    ]
    create(service, "with-examples", examples)
    extra = error(ask(service, template={"name": "with-examples"}), 422)
    assert "'history'" in extra["message"] and "examples" in extra["message"]
    # The service supplies the variables: the request may give none.
    given = error(ask(service, template={"name": "rag-answer", "variables": {"context": "x"}}), 422)
    assert given["code"] == "unexpected_variables" and "context" in given["message"]
    assert code(ask(service, template={"name": "summarize"}), 422) == "invalid_answer_prompt"
    assert code(ask(service, template={"name": "nope"}), 404) == "template_not_found"
    assert code(ask(service, stream=True, template={"name": "nope"}), 404) == "template_not_found"


# --- the playground runnable --------------------------------------------------------------


def test_prompt_runnable_picks_versions(service: RunningService, fake_openai: FakeOpenAI) -> None:
    greet(service)
    greet(service, text="Say goodbye to {name}.", model="gpt-4", params={"temperature": 0.4})
    prompt = remote(service)
    v1 = {"configurable": {"template": "greet", "version": 1}}
    v2 = {"configurable": {"template": "greet", "version": 2}}
    assert prompt.invoke({"name": "Bob"}, config=v1) == "echo: Say hello to Bob."
    assert sent(fake_openai)["messages"][0] == {"role": "system", "content": "You are terse."}
    assert prompt.invoke({"name": "Bob"}, config=v2) == "echo: Say goodbye to Bob."
    body = sent(fake_openai)
    assert (body["model"], body["temperature"]) == ("gpt-4", 0.4)  # version 2's defaults
    # Model and temperature from the config win.
    tuned = {"configurable": {"template": "greet", "model": "gpt-4o", "temperature": 0}}
    assert prompt.invoke({"name": "Eve"}, config=tuned) == "echo: Say goodbye to Eve."
    body = sent(fake_openai)
    assert (body["model"], body["temperature"]) == ("gpt-4o", 0)
    # stream and batch.
    assert "".join(prompt.stream({"name": "Al"}, config=v1)) == "echo: Say hello to Al."
    assert prompt.batch([{"name": "A"}, {"name": "B"}], config=v2) == [
        "echo: Say goodbye to A.",
        "echo: Say goodbye to B.",
    ]
    # A label, and a starter (the default template is `summarize`).
    set_label(service, "greet", "production", 1)
    assert prompt.invoke({"name": "Cy"}, config={"configurable": {"template": "greet"}}) == (
        "echo: Say hello to Cy."
    )
    assert prompt.invoke({"text": "T."}) == "echo: Summarize the following text:\n\nT."

    rows = usage_rows(service, 8)
    assert templates_of(rows, "runnables.prompt") == [
        ("greet", "1"),
        ("greet", "1"),
        ("greet", "1"),
        ("greet", "2"),
        ("greet", "2"),
        ("greet", "2"),
        ("greet", "2"),
        ("summarize", "1"),
    ]


def test_prompt_runnable_errors_and_isolation(service: RunningService) -> None:
    greet(service)

    def invoke(payload: Any, org: str = "org-a", endpoint: str = "invoke") -> httpx.Response:
        return httpx.post(
            f"{service.url}/runnables/prompt/{endpoint}",
            headers=service.headers(org),
            json=payload,
            timeout=30,
        )

    config = {"configurable": {"template": "greet"}}
    unknown = error(invoke({"input": {}, "config": {"configurable": {"template": "nope"}}}), 404)
    assert unknown["code"] == "template_not_found" and "nope" in unknown["message"]
    five = {"configurable": {"template": "greet", "version": 5}}
    assert code(invoke({"input": {"name": "x"}, "config": five}), 404) == "version_not_found"
    # Another org cannot reach org-a's template, whatever it puts in the config.
    stolen = {"configurable": {"template": "greet", "org_id": "org-a", "user_id": "alice"}}
    assert code(invoke({"input": {"name": "x"}, "config": stolen}, org="org-b"), 404) == (
        "template_not_found"
    )
    with pytest.raises(httpx.HTTPStatusError) as caught:
        remote(service, org="org-b").invoke({"name": "x"}, config=config)
    assert caught.value.response.status_code == 404
    # Bad variables: the template's 422, before a stream starts.
    assert code(invoke({"input": {}, "config": config}), 422) == "missing_variables"
    bad = {"input": {"name": "x", "extra": 1}, "config": config}
    assert code(invoke(bad, endpoint="stream"), 422) == "unexpected_variables"
    unknown_model = {"configurable": {"template": "greet", "model": "zz"}}
    assert code(invoke({"input": {"name": "x"}, "config": unknown_model}), 400) == "unknown_model"
    bad_name = {"input": {"name": "x"}, "config": {"configurable": {"template": "a b"}}}
    assert code(invoke(bad_name), 422) == "invalid_config"


def test_prompt_runnable_schema_and_playground(service: RunningService) -> None:
    headers = service.headers()
    schema = httpx.get(f"{service.url}/runnables/prompt/config_schema", headers=headers)
    assert schema.status_code == 200, schema.text
    text = str(schema.json())
    for field in ("template", "version", "label", "model", "temperature", "max_tokens"):
        assert field in text, field
    assert "org_id" not in text
    for endpoint in ("input_schema", "output_schema"):
        assert httpx.get(f"{service.url}/runnables/prompt/{endpoint}", headers=headers).is_success
    page = httpx.get(f"{service.url}/runnables/prompt/playground/", headers=headers)
    assert page.status_code == 200 and "<html" in page.text.lower()
