"""LangSmith tracing: off by default; when on, org/user/request id reach the tracer."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from langserve import RemoteRunnable
from langsmith import run_trees
from langsmith import utils as ls_utils

from tests.fakes.langsmith_server import FakeLangSmith


def _reset_langsmith() -> None:
    """LangSmith caches its environment and client per process."""
    ls_utils.get_env_var.cache_clear()
    ls_utils.get_tracer_project.cache_clear()
    if run_trees._CLIENT is not None:
        run_trees._CLIENT.flush()
    run_trees._CLIENT = None


@pytest.fixture
def langsmith(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLangSmith]:
    with FakeLangSmith() as fake:
        monkeypatch.setenv("LANGSMITH_TRACING", "true")
        monkeypatch.setenv("LANGSMITH_ENDPOINT", fake.url)
        monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-test")
        monkeypatch.setenv("LANGSMITH_PROJECT", "ahc-tests")
        _reset_langsmith()
        yield fake
        monkeypatch.delenv("LANGSMITH_TRACING")
        _reset_langsmith()


def wait_seen(fake: FakeLangSmith, *needles: str) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if run_trees._CLIENT is not None:
            run_trees._CLIENT.flush()
        if all(fake.seen(n) for n in needles):
            return True
        time.sleep(0.1)
    return False


def test_relay_and_graph_runs_carry_org_user_and_request_id(
    langsmith: FakeLangSmith, services
) -> None:
    service = services.start()
    headers = {**service.headers("org-traced", "tracy"), "x-request-id": "req-relay-1"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert (
        httpx.post(f"{service.api}/chat/completions", headers=headers, json=body).status_code == 200
    )
    assert wait_seen(langsmith, "org-traced", "tracy", "req-relay-1")
    headers["x-request-id"] = "req-graph-2"
    response = httpx.post(
        f"{service.api}/chat/completions", headers=headers, json={**body, "thread_id": "traced"}
    )
    assert response.status_code == 200
    assert wait_seen(langsmith, "req-graph-2", "route:chat.completions")


def test_langserve_runs_carry_the_caller(langsmith: FakeLangSmith, services) -> None:
    service = services.start()
    remote = RemoteRunnable(
        f"{service.url}/runnables/completion",
        headers={**service.headers("org-ls", "lsuser"), "x-request-id": "req-ls-3"},
    )
    remote.invoke({"input": "hello"})
    assert wait_seen(langsmith, "org-ls", "lsuser", "req-ls-3")


def test_langserve_batches_carry_the_caller(langsmith: FakeLangSmith, services) -> None:
    # LangServe's /batch rebuilds the config from `configurable`: tags and metadata travel
    # there too, so batch runs are traced with their caller like single ones.
    service = services.start()
    remote = RemoteRunnable(
        f"{service.url}/runnables/completion",
        headers={**service.headers("org-batch", "batcher"), "x-request-id": "req-ls-batch"},
    )
    assert len(remote.batch([{"input": "one"}, {"input": "two"}])) == 2
    assert wait_seen(
        langsmith, "org-batch", "batcher", "req-ls-batch", "route:runnables.completion"
    )


def test_tracing_is_off_by_default(services, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeLangSmith() as fake:
        # Endpoint and key configured, but tracing not switched on: nothing is sent.
        monkeypatch.delenv("LANGSMITH_TRACING", raising=False)
        monkeypatch.delenv("LANGCHAIN_TRACING_V2", raising=False)
        monkeypatch.setenv("LANGSMITH_ENDPOINT", fake.url)
        monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-test")
        _reset_langsmith()
        service = services.start()
        body = {"messages": [{"role": "user", "content": "hi"}]}
        httpx.post(f"{service.api}/chat/completions", headers=service.headers(), json=body)
        httpx.post(
            f"{service.api}/chat/completions",
            headers=service.headers(),
            json={**body, "thread_id": "t"},
        )
        time.sleep(0.5)
        assert fake.bodies == []
    _reset_langsmith()
