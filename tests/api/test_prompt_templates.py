"""Prompt templates over HTTP, on SQLite and PostgreSQL: versions, labels, isolation,
starters, validation, render, delete, pagination, malformed bodies; and ``resolve()``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg
import pytest

from auth.tokens import Principal
from db.migrate import upgrade
from db.session import create_engine, create_sessionmaker
from prompts.errors import PromptError
from services.prompt_templates import PromptTemplates, TemplateDraft
from tests.support.service import RunningService, ServiceFactory

PROMPT_TABLES = "ahc_prompt_labels, ahc_prompt_versions, ahc_prompt_templates"
STARTER_NAMES = {"summarize", "translate", "rag-answer", "email-draft"}


def truncate(url: str) -> None:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {PROMPT_TABLES}")


@pytest.fixture
def pt(db_services: ServiceFactory) -> RunningService:
    """The service; on PostgreSQL (one database per session) with empty template tables."""
    service = db_services.start()
    if service.settings.is_postgres:
        truncate(service.settings.resolved_database_url)
    return service


def body(name: str = "greet", text: str = "Say hello to {name}.", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "messages": [
            {"role": "system", "content": "You are a friendly assistant."},
            {"role": "user", "content": text},
        ],
        **extra,
    }


def create(
    svc: RunningService, payload: Any, org: str = "org-a", user: str = "alice"
) -> httpx.Response:
    return httpx.post(f"{svc.api}/prompt-templates", headers=svc.headers(org, user), json=payload)


def get(svc: RunningService, path: str, org: str = "org-a", **params: Any) -> httpx.Response:
    return httpx.get(f"{svc.api}/prompt-templates{path}", headers=svc.headers(org), params=params)


def render(svc: RunningService, name: str, org: str = "org-a", **payload: Any) -> httpx.Response:
    return httpx.post(
        f"{svc.api}/prompt-templates/{name}/render", headers=svc.headers(org), json=payload
    )


def label(
    svc: RunningService, name: str, lbl: str, version: Any, org: str = "org-a"
) -> httpx.Response:
    return httpx.put(
        f"{svc.api}/prompt-templates/{name}/labels/{lbl}",
        headers=svc.headers(org),
        json={"version": version},
    )


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "type"}
    return str(error["code"])


def test_versions_count_up_and_identical_content_makes_none(pt: RunningService) -> None:
    first = create(pt, body(description="Greets", tags=["demo"], params={"temperature": 0.2}))
    assert first.status_code == 201, first.text
    v1 = first.json()
    assert v1["version"] == 1 and v1["latest_version"] == 1 and v1["scope"] == "org"
    assert v1["input_variables"] == ["name"] and v1["template_format"] == "f-string"
    assert v1["params"] == {"temperature": 0.2} and v1["created_by"] == "alice"
    assert v1["labels"] == {} and len(v1["content_hash"]) == 64

    same = create(pt, body(params={"temperature": 0.2}, description="Greets people"), user="bob")
    assert same.status_code == 200, same.text
    assert same.json()["version"] == 1 and same.json()["created_by"] == "alice"
    assert same.json()["description"] == "Greets people"  # metadata is updated, no version
    assert same.json()["tags"] == ["demo"]  # omitted: kept

    v2 = create(pt, body(text="Say hi to {name}.", params={"temperature": 0.2}))
    assert v2.status_code == 201 and v2.json()["version"] == 2
    v3 = create(pt, body(text="Say hi to {name}.", model="gpt-4o"))  # model/params count
    assert v3.status_code == 201 and v3.json()["version"] == 3
    assert v3.json()["model"] == "gpt-4o" and v3.json()["params"] == {}
    back = create(pt, body(params={"temperature": 0.2}))  # v1's content again: a new version
    assert back.status_code == 201 and back.json()["version"] == 4

    versions = get(pt, "/greet/versions").json()
    assert versions["count"] == 4
    assert [v["version"] for v in versions["data"]] == [4, 3, 2, 1]
    assert all(v["latest_version"] == 4 for v in versions["data"])
    page = get(pt, "/greet/versions", limit=2, offset=2).json()
    assert [v["version"] for v in page["data"]] == [2, 1] and page["count"] == 4
    old = get(pt, "/greet", version=2).json()
    assert old["version"] == 2 and old["messages"][1]["content"] == "Say hi to {name}."
    assert get(pt, "/greet").json()["version"] == 4  # no production label: the latest
    assert error_code(get(pt, "/greet", version=9), 404) == "version_not_found"
    assert error_code(get(pt, "/nope"), 404) == "template_not_found"


def test_labels_move_and_production_is_the_default(pt: RunningService) -> None:
    for text in ("One {x}", "Two {x}", "Three {x}"):
        assert create(pt, body(text=text)).status_code == 201
    moved = label(pt, "greet", "production", 2)
    assert moved.status_code == 200, moved.text
    assert moved.json() == {
        "name": "greet",
        "label": "production",
        "version": 2,
        "labels": {"production": 2},
    }
    assert get(pt, "/greet").json()["version"] == 2  # production wins over the latest
    assert render(pt, "greet", variables={"x": "a"}).json()["messages"][1]["content"] == "Two a"
    assert label(pt, "greet", "staging", 3).json()["labels"] == {"production": 2, "staging": 3}
    staged = render(pt, "greet", label="staging", variables={"x": "b"}).json()
    assert staged["version"] == 3 and staged["messages"][1]["content"] == "Three b"
    assert get(pt, "/greet", label="production").json()["version"] == 2
    label(pt, "greet", "production", 3)  # promote
    assert get(pt, "/greet").json()["version"] == 3
    assert render(pt, "greet", version=1, variables={"x": "c"}).json()["version"] == 1
    listed = get(pt, "", q="greet").json()["data"][0]
    assert listed["version"] == 3 and listed["labels"] == {"production": 3, "staging": 3}

    assert error_code(label(pt, "greet", "production", 7), 404) == "version_not_found"
    assert error_code(label(pt, "nope", "production", 1), 404) == "template_not_found"
    assert error_code(get(pt, "/greet", label="canary"), 404) == "label_not_found"
    assert error_code(render(pt, "greet", label="canary", variables={"x": 1}), 404) == (
        "label_not_found"
    )
    assert error_code(get(pt, "/greet", label="production", version=1), 422) == "invalid_request"
    assert error_code(label(pt, "greet", "bad label!", 1), 422) == "invalid_request"
    assert error_code(label(pt, "greet", "production", 0), 422) == "invalid_request"


def test_another_orgs_template_is_not_found(pt: RunningService) -> None:
    assert create(pt, body(name="secret", text="Our plan: {x}"), org="org-a").status_code == 201
    admin_b = pt.headers("org-b", "root", "admin")
    for response in (
        get(pt, "/secret", org="org-b"),
        get(pt, "/secret/versions", org="org-b"),
        render(pt, "secret", org="org-b", variables={"x": "y"}),
        label(pt, "secret", "production", 1, org="org-b"),
        httpx.delete(f"{pt.api}/prompt-templates/secret", headers=admin_b),
    ):
        assert error_code(response, 404) == "template_not_found"
    names_b = {t["name"] for t in get(pt, "", org="org-b").json()["data"]}
    assert "secret" not in names_b
    own = create(pt, body(name="secret", text="Other {y}"), org="org-b")
    assert own.status_code == 201 and own.json()["version"] == 1
    assert get(pt, "/secret").json()["input_variables"] == ["x"]  # org-a's is untouched


def test_starters_are_listed_and_an_org_can_override_them(pt: RunningService) -> None:
    listing = get(pt, "").json()
    starters = {t["name"]: t for t in listing["data"] if t["scope"] == "system"}
    assert set(starters) == STARTER_NAMES and listing["count"] == 4
    assert all(t["version"] == 1 and t["created_by"] == "system" for t in starters.values())
    rag = get(pt, "/rag-answer").json()
    assert rag["scope"] == "system" and rag["input_variables"] == ["context", "question"]
    assert rag["optional_variables"] == ["history"]
    assert get(pt, "/rag-answer", version=1).json()["version"] == 1
    assert error_code(get(pt, "/rag-answer", version=2), 404) == "version_not_found"
    assert get(pt, "/summarize/versions").json()["count"] == 1
    translated = render(
        pt, "translate", variables={"target_language": "Korean", "text": "Good morning"}
    )
    assert translated.status_code == 200, translated.text
    assert "Korean" in translated.json()["messages"][0]["content"]
    assert translated.json()["messages"][1] == {"role": "user", "content": "Good morning"}

    admin = pt.headers("org-a", "root", "admin")
    assert error_code(label(pt, "summarize", "production", 1), 409) == "system_template"
    starter_delete = httpx.delete(f"{pt.api}/prompt-templates/summarize", headers=admin)
    assert error_code(starter_delete, 409) == "system_template"

    mine = create(pt, body(name="summarize", text="TL;DR of {doc}"))
    assert mine.status_code == 201 and mine.json()["version"] == 1
    summarize = [t for t in get(pt, "").json()["data"] if t["name"] == "summarize"]
    assert len(summarize) == 1 and summarize[0]["scope"] == "org"
    assert summarize[0]["input_variables"] == ["doc"]
    assert render(pt, "summarize", variables={"doc": "x"}).json()["messages"][1]["content"] == (
        "TL;DR of x"
    )
    other = [t for t in get(pt, "", org="org-b").json()["data"] if t["name"] == "summarize"]
    assert other[0]["scope"] == "system"  # only org-a's view changed

    assert httpx.delete(f"{pt.api}/prompt-templates/summarize", headers=admin).status_code == 204
    assert get(pt, "/summarize").json()["scope"] == "system"  # the starter is back


def test_variable_validation_names_what_is_wrong(pt: RunningService) -> None:
    mismatch = create(pt, body(text="Hi {name} from {city}", input_variables=["name", "town"]))
    assert error_code(mismatch, 422) == "input_variables_mismatch"
    message = mismatch.json()["error"]["message"]
    assert "city" in message and "town" in message
    assert mismatch.json()["error"]["undeclared"] == ["city"]
    assert mismatch.json()["error"]["unused"] == ["town"]

    for hostile in ("{name.__class__}", "{name[0]}", "{name!r}", "{name:>999999999}", "{0}"):
        refused = create(pt, body(text=hostile))
        assert error_code(refused, 422) == "invalid_template", hostile
        assert hostile in refused.json()["error"]["message"]
    hostile_mustache = create(pt, body(text="{{name.__class__}}", template_format="mustache"))
    assert error_code(hostile_mustache, 422) == "invalid_template"
    assert error_code(create(pt, body(text="{{>partial}}", template_format="mustache")), 422) == (
        "invalid_template"
    )
    assert get(pt, "").json()["count"] == 4  # nothing was stored

    assert create(pt, body(text="Hi {name} from {city}")).status_code == 201
    missing = render(pt, "greet", variables={"name": "Ann"})
    assert error_code(missing, 422) == "missing_variables"
    assert "city" in missing.json()["error"]["message"]
    assert missing.json()["error"]["variables"] == ["city"]
    extra = render(pt, "greet", variables={"name": "Ann", "city": "Seoul", "cty": "typo"})
    assert error_code(extra, 422) == "unexpected_variables"
    assert "cty" in extra.json()["error"]["message"]
    typed = render(pt, "greet", variables={"name": {"nested": 1}, "city": "Seoul"})
    assert error_code(typed, 422) == "invalid_variables"


def test_render_f_string_mustache_and_history(pt: RunningService) -> None:
    chat = {
        "name": "support",
        "template_format": "mustache",
        "model": "gpt-4o-mini",
        "params": {"temperature": 0, "max_tokens": 200},
        "messages": [
            {
                "role": "system",
                "content": "Support for {{product.name}}. Known issues:"
                "{{#issues}} [{{id}}]{{/issues}}",
            },
            {"role": "placeholder", "content": "{{history}}"},
            {"role": "user", "content": "{{{question}}}"},
        ],
    }
    created = create(pt, chat)
    assert created.status_code == 201, created.text
    assert created.json()["input_variables"] == ["issues", "product", "question"]
    assert created.json()["messages"][1] == {
        "role": "placeholder",
        "content": "{history}",
        "optional": True,
    }
    rendered = render(
        pt,
        "support",
        variables={
            "product": {"name": "Acme"},
            "issues": [{"id": 1}, {"id": 2}],
            "question": "Why <this>?",
            "history": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
        },
    )
    assert rendered.status_code == 200, rendered.text
    assert rendered.json() == {
        "name": "support",
        "version": 1,
        "scope": "org",
        "model": "gpt-4o-mini",
        "params": {"temperature": 0.0, "max_tokens": 200},
        "messages": [
            {"role": "system", "content": "Support for Acme. Known issues: [1] [2]"},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Yo"},
            {"role": "user", "content": "Why <this>?"},
        ],
    }
    bad_history = render(
        pt,
        "support",
        variables={"product": {}, "issues": [], "question": "q", "history": "not messages"},
    )
    assert error_code(bad_history, 422) == "invalid_variables"
    assert "history" in bad_history.json()["error"]["message"]


def test_delete_is_for_admins(pt: RunningService) -> None:
    create(pt, body())
    member = httpx.delete(f"{pt.api}/prompt-templates/greet", headers=pt.headers())
    assert error_code(member, 403) == "forbidden"
    admin = pt.headers("org-a", "root", "admin")
    assert httpx.delete(f"{pt.api}/prompt-templates/greet", headers=admin).status_code == 204
    assert error_code(get(pt, "/greet"), 404) == "template_not_found"
    assert error_code(httpx.delete(f"{pt.api}/prompt-templates/greet", headers=admin), 404)
    again = create(pt, body())
    assert again.status_code == 201 and again.json()["version"] == 1  # a fresh history


def test_pagination_search_and_tags(pt: RunningService) -> None:
    for name, tags in (
        ("alpha-mail", ["mail"]),
        ("beta-MAIL", ["mail", "sales"]),
        ("gamma", ["sales"]),
        ("delta", []),
        ("under_score", []),
    ):
        assert create(pt, body(name=name, tags=tags)).status_code == 201
    everything = get(pt, "").json()
    names = [t["name"] for t in everything["data"]]
    assert everything["count"] == 9 and names == sorted(names)
    pages = [get(pt, "", limit=4, offset=o).json() for o in (0, 4, 8)]
    assert [len(p["data"]) for p in pages] == [4, 4, 1] and all(p["count"] == 9 for p in pages)
    assert [t["name"] for p in pages for t in p["data"]] == names
    mail = get(pt, "", q="Mail").json()  # case-insensitive substring
    assert [t["name"] for t in mail["data"]] == ["alpha-mail", "beta-MAIL", "email-draft"]
    assert [t["name"] for t in get(pt, "", q="_").json()["data"]] == ["under_score"]  # literal
    sales = get(pt, "", tag="sales").json()
    assert {t["name"] for t in sales["data"]} == {"beta-MAIL", "gamma"} and sales["count"] == 2
    assert {t["name"] for t in get(pt, "", tag="rag").json()["data"]} == {"rag-answer"}
    both = get(pt, "", q="mail", tag="sales").json()
    assert [t["name"] for t in both["data"]] == ["beta-MAIL"]
    assert get(pt, "", q="zzz").json() == {"data": [], "count": 0}
    assert error_code(get(pt, "", limit=0), 422) == "invalid_request"


def test_malformed_bodies_are_422_never_500(pt: RunningService) -> None:
    url, headers = f"{pt.api}/prompt-templates", pt.headers()
    bad_bodies: list[Any] = [
        [1, 2],
        "text",
        {},
        {"name": "x"},
        {"name": "x", "messages": []},
        {"name": "x", "messages": [{"role": "tool", "content": "hi"}]},
        {"name": "x", "messages": [{"role": "user"}]},
        {"name": "x", "messages": [{"role": "user", "content": {"a": 1}}]},
        {"name": "x", "messages": [{"role": "user", "content": "hi", "extra": 1}]},
        {"name": "bad name", "messages": [{"role": "user", "content": "hi"}]},
        {"name": "x", "messages": [{"role": "user", "content": "hi"}], "params": {"tempr": 1}},
        {"name": "x", "messages": [{"role": "user", "content": "hi"}], "template_format": "jinja2"},
        {"name": "x", "messages": [{"role": "user", "content": "hi"}], "tags": "a"},
        {"name": "x", "messages": [{"role": "user", "content": "hi"}], "input_variables": "a"},
        {"name": "x", "messages": [{"role": "placeholder", "content": "no braces"}]},
        {"name": "x", "messages": [{"role": "user", "content": "hi", "optional": True}]},
    ]
    for payload in bad_bodies:
        response = httpx.post(url, headers=headers, json=payload)
        assert response.status_code == 422, (payload, response.text)
        assert response.json()["error"]["code"] in {"invalid_request", "invalid_template"}
    raw = httpx.post(url, headers={**headers, "content-type": "application/json"}, content=b"{")
    assert error_code(raw, 422) == "invalid_request"
    create(pt, body(text="Hi {name}"))
    for payload in ([], {"variables": []}, {"variables": {"name": "a"}, "version": "one"}):
        response = httpx.post(f"{url}/greet/render", headers=headers, json=payload)
        assert error_code(response, 422) == "invalid_request", payload
    for payload in ({}, {"version": "x"}, [1]):
        response = httpx.put(f"{url}/greet/labels/production", headers=headers, json=payload)
        assert error_code(response, 422) == "invalid_request", payload
    assert error_code(httpx.get(f"{url}/bad%20name", headers=headers), 422) == "invalid_request"
    assert httpx.get(url).status_code == 401


async def test_concurrent_versions_are_numbered_without_gaps(pt: RunningService) -> None:
    async with httpx.AsyncClient(base_url=pt.api, headers=pt.headers(), timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/prompt-templates", json=body(text=f"V{i} {{x}}")) for i in range(6))
        )
    assert [r.status_code for r in responses] == [201] * 6, [r.text for r in responses]
    assert sorted(r.json()["version"] for r in responses) == [1, 2, 3, 4, 5, 6]
    assert get(pt, "/greet/versions").json()["count"] == 6


async def test_resolve_is_what_flows_call(db_services: ServiceFactory) -> None:
    settings = db_services.settings()
    upgrade(settings)
    if settings.is_postgres:
        truncate(settings.resolved_database_url)
    engine = create_engine(settings)
    try:
        templates = PromptTemplates(create_sessionmaker(engine))
        alice = Principal(org_id="org-a", user_id="alice")
        for text in ("First {x}", "Second {x}"):
            await templates.create(
                alice,
                TemplateDraft(
                    name="flow",
                    messages=[{"role": "user", "content": text}],
                    model="gpt-4o-mini",
                    params={"temperature": 0.1},
                ),
            )
        latest = await templates.resolve("org-a", "flow")
        assert (latest.name, latest.version, latest.scope, latest.label) == ("flow", 2, "org", None)
        assert latest.model == "gpt-4o-mini" and dict(latest.params) == {"temperature": 0.1}
        assert latest.input_variables == ("x",) and latest.template_format == "f-string"
        assert latest.render_openai({"x": "go"}) == [{"role": "user", "content": "Second go"}]
        assert (await latest.prompt.ainvoke({"x": "y"})).to_messages()[0].content == "Second y"
        await templates.set_label(alice, "flow", "production", 1)
        production = await templates.resolve("org-a", "flow")
        assert (production.version, production.label) == (1, "production")
        assert (await templates.resolve("org-a", "flow", version=2)).version == 2
        with pytest.raises(PromptError) as caught:
            production.render({})
        assert caught.value.code == "missing_variables"
        rag = await templates.resolve("org-b", "rag-answer")
        assert rag.scope == "system" and rag.input_variables == ("context", "question")
        with pytest.raises(AttributeError):
            rag.version = 2  # type: ignore[misc]
    finally:
        await engine.dispose()
