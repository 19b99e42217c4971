"""``langgraph dev`` serves the graphs and the service's app from ``langgraph.json``.

One ``langgraph dev`` process (the official CLI, ``--no-browser``, no ``--allow-blocking``:
LangGraph's blocking-call check is on) for the module, on a free port, with the fake OpenAI
upstream as every model and a temporary data directory; driven with ``langgraph_sdk`` and
the service's REST API on the same port, with the service's own JWTs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError

from auth.tokens import mint_token
from core.config import Settings
from tests.fakes.openai_server import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
SECRET = "langgraph-test-secret-langgraph-test-secret!"
VPN = (
    "IT handbook. The office VPN client is GlobalProtect. Connect to vpn.example.com with "
    "your SSO login. The helpdesk phone extension is 4242."
)


@dataclass
class Studio:
    """The running ``langgraph dev`` and what a client needs to call it."""

    url: str
    settings: Settings
    log: Path

    def token(self, org: str = "org-a", user: str = "alice", role: str = "member") -> str:
        return mint_token(self.settings, org_id=org, user_id=user, role=role)  # type: ignore[arg-type]

    def headers(self, org: str = "org-a", user: str = "alice", role: str = "member") -> dict:
        return {"Authorization": f"Bearer {self.token(org, user, role)}"}

    def client(self, org: str = "org-a", user: str = "alice") -> LangGraphClient:
        return get_client(url=self.url, api_key=None, headers=self.headers(org, user))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def studio(_fake_openai_session: FakeOpenAI) -> Iterator[Studio]:
    """``langgraph dev`` from the project's ``langgraph.json``, started once for the module."""
    # A directory of its own, not pytest's basetemp: the server outlives single tests.
    work = Path(tempfile.mkdtemp(prefix="ahc-langgraph-dev-"))
    data = work / "data"
    port = _free_port()
    upstream = _fake_openai_session.base_url
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AHC_", "LANGSMITH_"))},
        "AHC_DATA_DIR": str(data),
        "AHC_ENVIRONMENT": "test",
        "AHC_JWT_SECRET": SECRET,
        "AHC_OPENAI_API_KEY": "sk-service-key",
        "AHC_OPENAI_BASE_URL": upstream,
        "AHC_LOCAL_MODEL_BASE_URL": upstream,
        "AHC_EMBEDDING_MODEL": "text-embedding-3-small",  # the fake's: no local model to load
        "AHC_UPSTREAM_BACKOFF_SECONDS": "0.01",
        "AHC_USAGE_FLUSH_INTERVAL_SECONDS": "0.05",
        "AHC_LOG_LEVEL": "WARNING",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGSMITH_TRACING": "false",
        "LANGGRAPH_DISABLE_FILE_PERSISTENCE": "true",  # no ./.langgraph_api left behind
    }
    log = work / "langgraph-dev.log"
    binary = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    assert binary, "langgraph-cli is not installed (the `studio` dependency group)"
    command = [binary, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--config", str(ROOT / "langgraph.json")]
    with log.open("wb") as out:
        # cwd: langgraph.json's paths are relative to the project's root
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"langgraph dev exited:\n{log.read_text()[-4000:]}"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not up in 120 s:\n{log.read_text()[-4000:]}"
            time.sleep(0.2)
        settings = Settings(_env_file=None, data_dir=data, jwt_secret=SECRET)  # type: ignore[call-arg]
        yield Studio(url=url, settings=settings, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        text = log.read_text()
        shutil.rmtree(work, ignore_errors=True)
    assert "BlockingError" not in text, text[-4000:]


def _texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages if isinstance(m.get("content"), str)]


def test_anonymous_and_bad_tokens_are_401(studio: Studio) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic x"},
        {"x-auth-scheme": "langsmith"},  # langgraph dev's Studio bypass is off
    ):
        response = httpx.post(f"{studio.url}/assistants/search", json={}, headers=headers)
        assert response.status_code == 401, response.text
    # The REST API on the same port keeps its own auth.
    assert httpx.get(f"{studio.url}/api/chat/threads").status_code == 401
    ok = httpx.post(f"{studio.url}/assistants/search", json={}, headers=studio.headers())
    assert ok.status_code == 200, ok.text


async def test_assistants_are_listed(studio: Studio) -> None:
    client = studio.client()
    assistants = {a["graph_id"]: a for a in await client.assistants.search()}
    assert {"chat", "rag"} <= set(assistants)
    # What Studio draws and the forms it shows: the graphs' shapes, no model call.
    drawing = await client.assistants.get_graph(assistants["rag"]["assistant_id"])
    nodes = {node["id"] for node in drawing["nodes"]}
    assert {"rewrite", "retrieve", "generate", "cite"} <= nodes
    schemas = await client.assistants.get_schemas(assistants["chat"]["assistant_id"])
    assert "messages" in schemas["input_schema"]["properties"]


async def test_chat_thread_remembers_two_turns(studio: Studio, fake_openai: FakeOpenAI) -> None:
    client = studio.client()
    thread = await client.threads.create()
    first = await client.runs.wait(
        thread["thread_id"], "chat", input={"messages": [{"role": "user", "content": "I am Bob"}]}
    )
    assert _texts(first["messages"])[-1] == "echo: I am Bob"
    second = await client.runs.wait(
        thread["thread_id"],
        "chat",
        input={"messages": [{"role": "user", "content": "Who am I?"}]},
    )
    assert _texts(second["messages"]) == [
        "I am Bob",
        "echo: I am Bob",
        "Who am I?",
        "echo: Who am I?",
    ]
    state = await client.threads.get_state(thread["thread_id"])  # Studio's thread view
    assert len(state["values"]["messages"]) == 4
    sent = fake_openai.requests[-1].body["messages"]
    assert [m["content"] for m in sent] == ["I am Bob", "echo: I am Bob", "Who am I?"]
    # Every call went out on the service's key, capped by the hold.
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-service-key"


async def test_chat_streams_message_tokens_and_values(
    studio: Studio, fake_openai: FakeOpenAI
) -> None:
    client = studio.client()
    thread = await client.threads.create()
    fake_openai.reply = "one two three"
    events = [
        part
        async for part in client.runs.stream(
            thread["thread_id"],
            "chat",
            input={"messages": [{"role": "user", "content": "count"}]},
            stream_mode=["messages-tuple", "values"],
        )
    ]
    kinds = {e.event for e in events}
    assert {"messages", "values"} <= kinds, kinds
    tokens = "".join(
        e.data[0].get("content") or "" for e in events if e.event == "messages" and e.data
    )
    assert tokens == "one two three"
    last_values = [e.data for e in events if e.event == "values"][-1]
    assert _texts(last_values["messages"]) == ["count", "one two three"]


async def test_another_orgs_or_users_thread_is_404(studio: Studio) -> None:
    thread = await studio.client().threads.create()
    for org, user in (("org-b", "alice"), ("org-a", "bob")):
        with pytest.raises(NotFoundError):
            await studio.client(org, user).threads.get(thread["thread_id"])
        found = await studio.client(org, user).threads.search()
        assert thread["thread_id"] not in {t["thread_id"] for t in found}


async def test_empty_input_is_422_without_a_model_call(
    studio: Studio, fake_openai: FakeOpenAI
) -> None:
    client = studio.client()
    thread = await client.threads.create()
    before = len(fake_openai.requests)
    async with httpx.AsyncClient(base_url=studio.url, timeout=30) as http:
        response = await http.post(
            f"/threads/{thread['thread_id']}/runs/wait",
            json={"assistant_id": "chat", "input": {"messages": []}},
            headers=studio.headers(),
        )
    assert response.status_code == 422, response.text
    assert "messages" in response.text
    assert len(fake_openai.requests) == before


async def test_rag_answers_from_the_callers_org_with_citations(
    studio: Studio, fake_openai: FakeOpenAI
) -> None:
    async with httpx.AsyncClient(base_url=studio.url, timeout=60) as http:
        uploaded = await http.post(
            "/api/knowledge/documents",
            headers=studio.headers(),
            files=[("files", ("it.txt", VPN.encode(), "text/plain"))],
        )
    assert uploaded.status_code == 201, uploaded.text
    document = uploaded.json()["documents"][0]
    assert document["status"] == "ready", document
    fake_openai.reply = "GlobalProtect [1]."
    question = {"question": "Which VPN client do we use?"}
    # org-b asks as if it were org-a: the org comes from the token, not from configurable.
    other = await studio.client("org-b").runs.wait(
        None, "rag", input=question, config={"configurable": {"org_id": "org-a"}}
    )
    assert other["citations"] == []
    answer = await studio.client().runs.wait(None, "rag", input=question)
    assert answer["answer"] == "GlobalProtect [1]."
    assert [c["document_id"] for c in answer["citations"]] == [document["id"]]
    # The query's embedding and the answer.
    routes = await _usage_routes(studio, "org-a", until="langgraph.rag", at_least=2)
    assert routes["langgraph.rag"]["requests"] >= 2


async def test_runs_are_usage_events_of_the_tokens_org(
    studio: Studio, fake_openai: FakeOpenAI
) -> None:
    client = studio.client("org-u", "carol")
    await client.runs.wait(
        None,
        "chat",
        input={"messages": [{"role": "user", "content": "hi"}]},
        config={"configurable": {"org_id": "org-a", "user_id": "mallory"}},
    )
    routes = await _usage_routes(studio, "org-u", until="langgraph.chat")
    assert routes["langgraph.chat"]["requests"] == 1
    assert routes["langgraph.chat"]["prompt_tokens"] > 0
    async with httpx.AsyncClient(base_url=studio.url) as http:
        admin = studio.headers("org-u", "carol", role="admin")
        users = (await http.get("/api/usage?group_by=user", headers=admin)).json()["groups"]
    assert [g["key"] for g in users] == ["carol"]


async def _usage_routes(
    studio: Studio, org: str, *, until: str, at_least: int = 1
) -> dict[str, Any]:
    """The org's usage by route, once ``until`` shows ``at_least`` requests (events are
    written in batches: two events of one run may land in two)."""
    admin = studio.headers(org, "admin", role="admin")
    deadline = time.monotonic() + 15
    async with httpx.AsyncClient(base_url=studio.url) as http:
        while True:
            usage = await http.get("/api/usage?group_by=route", headers=admin)
            assert usage.status_code == 200, usage.text
            routes = {g["key"]: g for g in usage.json()["groups"]}
            if until in routes and routes[until]["requests"] >= at_least:
                return routes
            assert time.monotonic() < deadline, routes
            await asyncio.sleep(0.1)


async def test_limits_hold_for_runs(studio: Studio, fake_openai: FakeOpenAI) -> None:
    admin = studio.headers("org-l", "boss", role="admin")
    async with httpx.AsyncClient(base_url=studio.url) as http:
        limit = await http.put("/api/limits", json={"requests_per_minute": 1}, headers=admin)
    assert limit.status_code == 200, limit.text
    client = studio.client("org-l", "dave")
    turn = {"messages": [{"role": "user", "content": "hi"}]}
    await client.runs.wait(None, "chat", input=turn)
    before = len(fake_openai.requests)
    with pytest.raises(Exception, match="requests_per_minute limit"):
        await client.runs.wait(None, "chat", input=turn)
    assert len(fake_openai.requests) == before
