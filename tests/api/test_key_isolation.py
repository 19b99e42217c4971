"""Org ids with ``:`` or ``/`` never reach another org's memory or counters (issue 17.2).

Org ids come from ai-helper-back and may be any string. Raw, org ``rag:acme``'s chat
thread ``t1`` had the checkpoint key of org ``acme``'s knowledge thread ``t1``
(``rag:acme/t1``), and user ``b:c`` of org ``a`` shared the limit counters of user ``c``
of org ``a:b``.
"""

from __future__ import annotations

import httpx

from tests.api.test_rag import IT, VPN_QUESTION, ask
from tests.fakes.openai_server import FakeOpenAI
from tests.support.knowledge import upload
from tests.support.service import RunningService, ServiceFactory


def chat(svc: RunningService, org: str, user: str, text: str, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{svc.api}/chat/completions",
        headers=svc.headers(org, user),
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra},
        timeout=30,
    )


def test_rag_prefixed_org_does_not_see_the_other_orgs_knowledge_thread(
    db_services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    svc = db_services.start()  # SQLite and PostgreSQL checkpointers
    stored = upload(svc, [("it.txt", IT.encode())], org="acme")
    assert stored.status_code == 201, stored.text
    fake_openai.reply = "GlobalProtect [1]."
    asked = ask(svc, VPN_QUESTION, org="acme", thread_id="t1")
    assert asked.status_code == 200, asked.text

    intruder = svc.headers("rag:acme", "alice")
    assert httpx.get(f"{svc.api}/chat/threads/t1", headers=intruder).status_code == 404
    fake_openai.reply = None
    first = chat(svc, "rag:acme", "alice", "hello", thread_id="t1")
    assert first.status_code == 200, first.text
    sent = [m["content"] for m in fake_openai.requests[-1].body["messages"]]
    assert sent == ["hello"]  # no history: not acme's question and answer
    thread = httpx.get(f"{svc.api}/chat/threads/t1", headers=intruder).json()
    assert [m["content"] for m in thread["messages"]] == ["hello", "echo: hello"]
    assert thread["knowledge_messages"] == []

    # acme's knowledge thread is untouched, and its chat side still empty.
    owner = httpx.get(f"{svc.api}/chat/threads/t1", headers=svc.headers("acme", "alice")).json()
    assert owner["messages"] == []
    assert [m["content"] for m in owner["knowledge_messages"]] == [
        VPN_QUESTION,
        "GlobalProtect [1].",
    ]


def test_colon_ids_do_not_share_limit_counters(service: RunningService) -> None:
    for org, user in (("a", "b:c"), ("a:b", "c")):
        limits = httpx.put(
            f"{service.api}/limits",
            headers=service.headers(org, "boss", "admin"),
            json={"requests_per_minute": 1, "user_id": user},
        )
        assert limits.status_code == 200, limits.text
    assert chat(service, "a", "b:c", "hi").status_code == 200
    assert chat(service, "a:b", "c", "hi").status_code == 200  # its own counter
    denied = chat(service, "a", "b:c", "again")
    assert denied.status_code == 429 and denied.json()["error"]["scope"] == "user"
