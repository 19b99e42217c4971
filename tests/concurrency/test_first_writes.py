"""Concurrent first writes answer what sequential ones would: no 500, no dropped connection.

Each case fires its requests at once (``asyncio.gather`` on one ``httpx.AsyncClient``)
against the live service, on SQLite and PostgreSQL (issue 17, item 3): the loser of an
insert race used to hit the unique constraint and answer 500. Each case races ``ROUNDS``
times with fresh names, since a single race can be won cleanly by luck.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import httpx
import pytest

from auth.tokens import Principal
from core.errors import ApiError
from db.migrate import upgrade
from db.session import create_engine, create_sessionmaker
from prompts import store
from services.prompt_templates import PromptTemplates, TemplateDraft
from tests.support.service import RunningService, ServiceFactory

N = 8
ROUNDS = 3

Outcome = httpx.Response | BaseException
Request = Coroutine[Any, Any, httpx.Response]


@pytest.fixture
def svc(db_services: ServiceFactory) -> RunningService:
    """The service on SQLite and on PostgreSQL."""
    return db_services.start()


@pytest.fixture
async def client(svc: RunningService) -> AsyncIterator[httpx.AsyncClient]:
    """An async client of the service's API (headers per request)."""
    async with httpx.AsyncClient(base_url=svc.api, timeout=60) as http:
        yield http


def new_org() -> str:
    """An org of its own: PostgreSQL's checkpoint tables outlive a test."""
    return f"org-{uuid.uuid4().hex[:8]}"


async def at_once(calls: list[Request]) -> list[Outcome]:
    """Send every request concurrently; a dropped connection is returned, not raised."""
    return await asyncio.gather(*calls, return_exceptions=True)


def statuses(outcomes: list[Outcome]) -> list[int | str]:
    """Status codes, or the exception's name (a connection dropped after a 500)."""
    return [o.status_code if isinstance(o, httpx.Response) else type(o).__name__ for o in outcomes]


def responses(outcomes: list[Outcome], expected: list[int]) -> list[httpx.Response]:
    """The responses, asserting their sorted statuses are ``expected``."""
    texts = [o.text if isinstance(o, httpx.Response) else repr(o) for o in outcomes]
    assert sorted(statuses(outcomes), key=str) == expected, texts
    return [o for o in outcomes if isinstance(o, httpx.Response)]


@pytest.mark.parametrize("user_id", [None, "bob"])
async def test_first_limits_put(
    svc: RunningService, client: httpx.AsyncClient, user_id: str | None
) -> None:
    extra = {"user_id": user_id} if user_id else {}
    for _ in range(ROUNDS):
        admin = svc.headers(new_org(), "boss", "admin")
        calls: list[Request] = [
            client.put("/limits", headers=admin, json={"requests_per_minute": i + 1, **extra})
            for i in range(N)
        ]
        answers = responses(await at_once(calls), [200] * N)
        assert sorted(r.json()["requests_per_minute"] for r in answers) == list(range(1, N + 1))
        assert {r.json()["user_id"] for r in answers} == {user_id}
        rows = (await client.get("/limits", headers=admin)).json()["data"]
        assert [row["user_id"] for row in rows] == [user_id]
        assert 1 <= rows[0]["requests_per_minute"] <= N  # one writer's, whole


async def test_first_provider_key_put(svc: RunningService, client: httpx.AsyncClient) -> None:
    keys = [f"sk-own-key-{i:04d}" for i in range(N)]
    for _ in range(ROUNDS):
        admin = svc.headers(new_org(), "boss", "admin")
        calls: list[Request] = [
            client.put("/provider-keys/openai", headers=admin, json={"api_key": k}) for k in keys
        ]
        answers = responses(await at_once(calls), [200] * N)
        assert sorted(r.json()["last4"] for r in answers) == sorted(k[-4:] for k in keys)
        rows = (await client.get("/provider-keys", headers=admin)).json()["data"]
        assert [row["provider"] for row in rows] == ["openai"]
        assert rows[0]["last4"] in {k[-4:] for k in keys}


async def test_provider_key_delete_answers_204_once(
    svc: RunningService, client: httpx.AsyncClient
) -> None:
    for _ in range(ROUNDS):
        admin = svc.headers(new_org(), "boss", "admin")
        stored = await client.put(
            "/provider-keys/openai", headers=admin, json={"api_key": "sk-own-1234"}
        )
        assert stored.status_code == 200, stored.text
        calls: list[Request] = [
            client.delete("/provider-keys/openai", headers=admin) for _ in range(N)
        ]
        responses(await at_once(calls), [204] + [404] * (N - 1))


def template(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "messages": [{"role": "user", "content": text}]}


async def test_first_template_version_same_content(
    svc: RunningService, client: httpx.AsyncClient
) -> None:
    for _ in range(ROUNDS):
        headers = svc.headers(new_org(), "alice")
        calls: list[Request] = [
            client.post("/prompt-templates", headers=headers, json=template("greet", "Hi {x}"))
            for _ in range(N)
        ]
        answers = responses(await at_once(calls), [200] * (N - 1) + [201])
        assert {r.json()["version"] for r in answers} == {1}


async def test_first_template_versions_different_content(
    svc: RunningService, client: httpx.AsyncClient
) -> None:
    for _ in range(ROUNDS):
        headers = svc.headers(new_org(), "alice")
        calls: list[Request] = [
            client.post("/prompt-templates", headers=headers, json=template("greet", f"V{i} {{x}}"))
            for i in range(N)
        ]
        answers = responses(await at_once(calls), [201] * N)
        assert sorted(r.json()["version"] for r in answers) == list(range(1, N + 1))


async def test_first_template_label(svc: RunningService, client: httpx.AsyncClient) -> None:
    for _ in range(ROUNDS):
        headers = svc.headers(new_org(), "alice")
        for text in ("One {x}", "Two {x}"):
            created = await client.post(
                "/prompt-templates", headers=headers, json=template("greet", text)
            )
            assert created.status_code == 201, created.text
        calls: list[Request] = [
            client.put(
                "/prompt-templates/greet/labels/production",
                headers=headers,
                json={"version": 1 + i % 2},
            )
            for i in range(N)
        ]
        answers = responses(await at_once(calls), [200] * N)
        assert all(list(r.json()["labels"]) == ["production"] for r in answers)
        final = (await client.get("/prompt-templates/greet", headers=headers)).json()
        assert final["labels"]["production"] in (1, 2)


async def test_thread_delete_answers_204_once(
    svc: RunningService, client: httpx.AsyncClient
) -> None:
    for _ in range(ROUNDS):
        headers = svc.headers(new_org(), "alice")
        first = await client.post(
            "/chat/completions",
            headers=headers,
            json={
                "model": "gpt-4o-mini",
                "thread_id": "gone",
                "messages": [{"role": "user", "content": "remember me"}],
            },
        )
        assert first.status_code == 200, first.text
        calls: list[Request] = [
            client.delete("/chat/threads/gone", headers=headers) for _ in range(N)
        ]
        responses(await at_once(calls), [204] + [404] * (N - 1))
        assert (await client.get("/chat/threads/gone", headers=headers)).status_code == 404


async def test_template_delete_waits_for_a_label_being_set(
    db_services: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delete that comes while a label is written waits for it (no foreign key 500)."""
    settings = db_services.settings()
    if not settings.is_postgres:
        pytest.skip("SQLite runs one writer at a time and enforces no foreign keys")
    upgrade(settings)
    engine = create_engine(settings)
    try:
        templates = PromptTemplates(create_sessionmaker(engine))
        org = new_org()
        alice, boss = Principal(org, "alice"), Principal(org, "boss", "admin")
        draft = TemplateDraft(name="greet", messages=[{"role": "user", "content": "Hi {x}"}])
        await templates.create(alice, draft)
        writing, release = asyncio.Event(), asyncio.Event()
        set_label = store.set_label

        async def paused_set_label(*args: Any, **kwargs: Any) -> Any:
            writing.set()  # the template and version were found: the label comes next
            await release.wait()
            return await set_label(*args, **kwargs)

        monkeypatch.setattr(store, "set_label", paused_set_label)
        label = asyncio.create_task(templates.set_label(alice, "greet", "production", 1))
        await writing.wait()
        delete = asyncio.create_task(templates.delete(boss, "greet"))
        await asyncio.sleep(0.3)
        assert not delete.done()  # waits on the template row the label's writer holds
        release.set()
        assert await label == {"production": 1}
        await delete
        with pytest.raises(ApiError) as missing:
            await templates.get(org, "greet")
        assert missing.value.status_code == 404
    finally:
        await engine.dispose()
