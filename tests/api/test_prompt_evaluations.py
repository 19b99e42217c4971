"""Prompt evaluations over HTTP against the fake OpenAI server: versions compared with
numbers, the judge, similarity, accounting, limits, validation, cancel, restart recovery.

The fake answers "echo: <last user message>" unless ``fake_openai.reply`` is set, so a
template version whose user message is just ``{country}`` answers "echo: France".
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from db.migrate import sync_url
from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService, ServiceFactory

DATASET = [
    {"variables": {"country": "France"}, "expected": "echo: France"},
    {"variables": {"country": "Japan"}, "expected": "Japan"},
    {"variables": {"country": "Peru"}, "expected": "ECHO:  peru"},
]
FINISHED = ("done", "failed", "cancelled")


def make_template(svc: RunningService, name: str = "capital", org: str = "org-a") -> None:
    """Version 1 asks a question; version 2 sends the country alone (echoed back)."""
    for text in ("What is the capital of {country}?", "{country}"):
        response = httpx.post(
            f"{svc.api}/prompt-templates",
            headers=svc.headers(org),
            json={
                "name": name,
                "messages": [
                    {"role": "system", "content": "Answer in one word."},
                    {"role": "user", "content": text},
                ],
            },
        )
        assert response.status_code == 201, response.text


def evaluate(
    svc: RunningService,
    name: str = "capital",
    org: str = "org-a",
    user: str = "alice",
    role: str = "member",
    **payload: Any,
) -> httpx.Response:
    payload.setdefault("dataset", DATASET)
    return httpx.post(
        f"{svc.api}/prompt-templates/{name}/evaluate",
        headers=svc.headers(org, user, role),  # type: ignore[arg-type]
        json=payload,
        timeout=30,
    )


def started(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] in ("queued", "running", "done")
    assert response.headers["location"] == (
        f"/api/prompt-templates/{body['name']}/evaluations/{body['id']}"
    )
    return body


def poll(svc: RunningService, location: str, org: str = "org-a", timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{svc.url}{location}", headers=svc.headers(org))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in FINISHED:
            return body
        assert time.monotonic() < deadline, f"still {body['status']}: {body['progress']}"
        time.sleep(0.05)


def run(svc: RunningService, **payload: Any) -> dict[str, Any]:
    response = evaluate(svc, **payload)
    started(response)
    return poll(svc, response.headers["location"])


def by_version(body: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {v["version"]: v for v in body["results"]["versions"]}


def reply_cap(body: dict[str, Any]) -> Any:
    """LangChain sends ``max_tokens`` as ``max_completion_tokens``."""
    return body.get("max_completion_tokens", body.get("max_tokens"))


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert {"code", "message", "type"} <= set(error)
    return error


def usage_events(svc: RunningService, count: int, **where: Any) -> list[dict[str, Any]]:
    """The evaluation's usage events (written in batches: poll until ``count`` landed)."""
    engine = sa.create_engine(sync_url(svc.settings.resolved_database_url))
    clauses = " AND ".join(f"{k} = :{k}" for k in where)
    query = sa.text(f"SELECT * FROM ahc_usage_events WHERE {clauses} ORDER BY created_at")
    deadline = time.monotonic() + 10
    try:
        while True:
            with engine.connect() as conn:
                rows = [dict(r._mapping) for r in conn.execute(query, where)]
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)
    finally:
        engine.dispose()


def test_two_versions_compared_with_numbers_and_accounted(
    db_services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    svc = db_services.start()
    make_template(svc)
    response = evaluate(svc, versions=[1, 2], evaluators=["exact", "contains", "length"])
    queued = started(response)
    assert queued["versions"] == [1, 2] and queued["progress"] == {"done": 0, "total": 6}
    assert queued["evaluators"] == [
        {"name": "exact", "ignore_case": True},
        {"name": "contains", "ignore_case": True},
        {"name": "length", "unit": "characters"},
    ]
    assert queued["dataset_size"] == 3 and queued["dataset"][1]["expected"] == "Japan"
    assert queued["concurrency"] == 4 and queued["created_by"] == "alice"

    body = poll(svc, response.headers["location"])
    assert body["status"] == "done" and body["error"] is None, body
    assert body["progress"] == {"done": 6, "total": 6}
    assert body["started_at"] and body["finished_at"] >= body["started_at"]
    v1, v2 = by_version(body)[1], by_version(body)[2]
    # v1 answers "echo: What is the capital of France?", v2 "echo: France".
    assert v1["scores"]["exact"] == 0.0 and v1["scores"]["contains"] == pytest.approx(1 / 3)
    assert v2["scores"]["exact"] == pytest.approx(2 / 3) and v2["scores"]["contains"] == 1.0
    assert v1["scores"]["length"] > v2["scores"]["length"]
    assert body["results"]["best"]["exact"] == [2] and body["results"]["best"]["contains"] == [2]
    assert "length" not in body["results"]["best"]
    for version in (v1, v2):
        assert version["n"] == 3 and version["errors"] == 0 and version["model"] == "gpt-4o-mini"
        assert version["latency_ms"]["p50"] is not None
        assert version["latency_ms"]["p95"] >= version["latency_ms"]["p50"] > 0
        tokens = version["tokens"]
        assert tokens["total"] == tokens["prompt"] + tokens["completion"] > 0
        cost = (tokens["prompt"] * 0.15 + tokens["completion"] * 0.6) / 1e6
        assert version["cost_usd"] == pytest.approx(cost)
        assert version["evaluator_usage"] == {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_usd": 0.0,
        }
        assert [item["index"] for item in version["items"]] == [0, 1, 2]
    item = v2["items"][0]
    assert item["output"] == "echo: France" and item["output_truncated"] is False
    assert item["scores"] == {"exact": 1.0, "contains": 1.0, "length": 12.0}
    assert item["error"] is None and item["latency_ms"] > 0
    # 'What is the capital of France?' = 6 words + 3, 'Answer in one word.' 4 + 3.
    assert v1["items"][0]["prompt_tokens"] == 16 and v1["items"][0]["completion_tokens"] == 7

    # Every call is a usage event: route, template version, the evaluation as request id.
    events = usage_events(svc, 6, request_id=body["id"])
    assert len(events) == 6
    assert {e["route"] for e in events} == {"prompt.evaluate"}
    assert {e["template_name"] for e in events} == {"capital"}
    assert sorted(e["template_version"] for e in events) == [1, 1, 1, 2, 2, 2]
    assert {e["user_id"] for e in events} == {"alice"}
    for number, version in ((1, v1), (2, v2)):
        mine = [e for e in events if e["template_version"] == number]
        assert sum(e["prompt_tokens"] for e in mine) == version["tokens"]["prompt"]
        assert sum(e["completion_tokens"] for e in mine) == version["tokens"]["completion"]
    assert all(r.headers["authorization"] == "Bearer sk-service-key" for r in fake_openai.requests)

    # Stored and listable; another org sees nothing.
    second = run(svc, evaluators=["contains"])  # versions omitted: the latest (2)
    assert second["versions"] == [2] and by_version(second)[2]["scores"]["contains"] == 1.0
    listed = httpx.get(
        f"{svc.api}/prompt-templates/capital/evaluations", headers=svc.headers(user="bob")
    ).json()
    assert listed["count"] == 2 and [e["id"] for e in listed["data"]] == [second["id"], body["id"]]
    assert listed["data"][1]["results"]["versions"][0]["items"] is None  # no items in lists
    assert listed["data"][1]["results"]["versions"][0]["scores"] == v1["scores"]
    assert listed["data"][1]["dataset"] is None
    page = httpx.get(
        f"{svc.api}/prompt-templates/capital/evaluations",
        headers=svc.headers(),
        params={"limit": 1, "offset": 1, "status": "done"},
    ).json()
    assert page["count"] == 2 and [e["id"] for e in page["data"]] == [body["id"]]
    location = response.headers["location"]
    assert error_of(httpx.get(f"{svc.url}{location}", headers=svc.headers("org-b")), 404)[
        "code"
    ] == ("evaluation_not_found")
    other = httpx.get(
        f"{svc.api}/prompt-templates/capital/evaluations", headers=svc.headers("org-b")
    )
    assert other.json() == {"data": [], "count": 0}
    wrong_name = httpx.get(
        f"{svc.api}/prompt-templates/other/evaluations/{body['id']}", headers=svc.headers()
    )
    assert error_of(wrong_name, 404)["code"] == "evaluation_not_found"
    # Another org cannot evaluate the template either.
    assert error_of(evaluate(svc, org="org-b"), 404)["code"] == "template_not_found"


@pytest.mark.parametrize(
    ("reply", "grade"),
    [('{"score": 8, "reason": "Close enough."}', 0.8), ("Score: 6/10", 0.6), ("9", 0.9)],
)
def test_judge_with_a_model_and_rubric(
    service: RunningService, fake_openai: FakeOpenAI, reply: str, grade: float
) -> None:
    make_template(service)
    fake_openai.reply = reply  # the versions' answers and the judge's alike
    rubric = "Does the answer name the capital city? Be strict."
    body = run(
        service,
        versions=[1, 2],
        dataset=DATASET[:2],
        evaluators=[{"name": "judge", "model": "gpt-4o", "rubric": rubric}],
    )
    assert body["status"] == "done", body
    assert body["evaluators"] == [{"name": "judge", "model": "gpt-4o", "rubric": rubric}]
    for version in by_version(body).values():
        assert version["scores"]["judge"] == pytest.approx(grade)
        assert version["evaluator_errors"] == {"judge": 0}
        assert version["evaluator_usage"]["prompt_tokens"] > 0
        assert version["evaluator_usage"]["cost_usd"] > 0  # gpt-4o's price
        assert version["model"] == "gpt-4o-mini"
    item = by_version(body)[1]["items"][0]
    if reply.startswith("{"):
        assert item["judge_reason"] == "Close enough."
    judged = [r.body for r in fake_openai.requests if r.body and r.body.get("model") == "gpt-4o"]
    assert len(judged) == 4
    prompt = judged[0]["messages"][1]["content"]
    assert rubric in prompt and "REFERENCE ANSWER:" in prompt and f"OUTPUT:\n{reply}" in prompt
    assert '"score"' in judged[0]["messages"][0]["content"]
    assert judged[0]["temperature"] == 0 and reply_cap(judged[0]) == 256
    events = usage_events(service, 8, request_id=body["id"])
    assert len(events) == 8 and {e["route"] for e in events} == {"prompt.evaluate"}
    assert sorted({(e["model"], e["template_version"]) for e in events}) == [
        ("gpt-4o", 1),
        ("gpt-4o", 2),
        ("gpt-4o-mini", 1),
        ("gpt-4o-mini", 2),
    ]


def test_an_unreadable_judge_is_an_evaluator_error_not_a_failure(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    make_template(service)
    fake_openai.reply = "I would rather not grade this."
    body = run(service, versions=[2], evaluators=["judge", "contains"])
    assert body["status"] == "done"
    assert body["evaluators"][0]["model"] == "gpt-4o-mini"  # the default model, as resolved
    v2 = by_version(body)[2]
    assert v2["scores"] == {"judge": None, "contains": 0.0}
    assert v2["evaluator_errors"] == {"judge": 3, "contains": 0} and v2["errors"] == 0
    item = v2["items"][0]
    assert item["scores"]["judge"] is None
    assert item["evaluator_errors"]["judge"]["code"] == "judge_unparseable"
    assert item["judge_reason"] == "I would rather not grade this."
    assert "judge" not in body["results"]["best"]


def test_similarity_with_the_local_embedder_is_accounted(service: RunningService) -> None:
    make_template(service)
    body = run(service, versions=[1, 2], dataset=DATASET[:1], evaluators=["similarity"])
    assert body["status"] == "done", body
    assert body["evaluators"] == [{"name": "similarity", "model": "local"}]
    v1, v2 = by_version(body)[1]["scores"], by_version(body)[2]["scores"]
    assert v2["similarity"] == pytest.approx(1.0, abs=1e-3)  # "echo: France" both sides
    assert 0 < v1["similarity"] < v2["similarity"]
    assert body["results"]["best"]["similarity"] == [2]
    events = usage_events(service, 4, request_id=body["id"])
    embedding = [e for e in events if e["model"].startswith("local-")]
    assert len(embedding) == 2 and {e["route"] for e in embedding} == {"prompt.evaluate"}
    assert sorted(e["template_version"] for e in embedding) == [1, 2]
    assert all(e["cost_usd"] == 0 for e in embedding)


def test_overrides_failures_and_defaults(service: RunningService, fake_openai: FakeOpenAI) -> None:
    make_template(service)
    fake_openai.fail_next(status=400)  # one item's call is refused upstream (not retried)
    body = run(
        service,
        versions=[2],
        model="gpt-4o",
        params={"temperature": 0.3, "max_tokens": 50},
        concurrency=1,
        evaluators=["exact"],
    )
    assert body["status"] == "done" and body["model"] == "gpt-4o"
    assert body["params"] == {"temperature": 0.3, "max_tokens": 50}
    v2 = by_version(body)[2]
    assert v2["model"] == "gpt-4o" and v2["params"] == {"temperature": 0.3, "max_tokens": 50}
    assert v2["n"] == 3 and v2["errors"] == 1
    failed = v2["items"][0]
    assert failed["error"]["code"] == "upstream_bad_request" and failed["output"] is None
    assert failed["scores"] == {}
    assert v2["scores"]["exact"] == pytest.approx(0.5)  # over the items that ran
    sent = [r.body for r in fake_openai.requests if r.path.endswith("/chat/completions")]
    assert all(b["model"] == "gpt-4o" and b["temperature"] == 0.3 for b in sent)
    assert all(reply_cap(b) == 50 for b in sent)


def test_a_starter_template_can_be_evaluated(service: RunningService) -> None:
    body = run(
        service,
        name="summarize",
        dataset=[{"variables": {"text": "The meeting moved to Friday."}, "expected": "Friday"}],
        evaluators=["contains", {"name": "length", "unit": "words"}],
    )
    assert body["status"] == "done" and body["versions"] == [1]
    assert by_version(body)[1]["scores"] == {"contains": 1.0, "length": 10.0}


def test_a_limit_stops_the_evaluation(service: RunningService) -> None:
    make_template(service)
    admin = service.headers(role="admin")
    limit = httpx.put(f"{service.api}/limits", headers=admin, json={"tokens_per_day": 100})
    assert limit.status_code == 200, limit.text
    body = run(service, versions=[1, 2], evaluators=["exact"])
    assert body["status"] == "failed"
    assert body["error"].startswith("limit_exceeded: ") and "tokens_per_day" in body["error"]
    assert all(v["n"] == 0 for v in body["results"]["versions"])  # what ran: nothing


def test_bad_requests_are_refused_up_front(service: RunningService) -> None:
    make_template(service)

    def refused(status: int, **payload: Any) -> dict[str, Any]:
        return error_of(evaluate(service, **payload), status)

    error = refused(422, versions=[1, 3, 7])
    assert error["code"] == "unknown_versions" and error["versions"] == [3, 7]
    assert "3, 7" in error["message"] and "latest: 2" in error["message"]
    error = refused(422, evaluators=["exact", "bleu"])
    assert error["code"] == "unknown_evaluator" and "'bleu'" in error["message"]
    assert refused(422, evaluators=["length", "length"])["code"] == "duplicate_evaluator"
    error = refused(422, evaluators=[{"name": "exact", "rubric": "x"}])
    assert error["code"] == "invalid_evaluator" and "rubric" in error["message"]
    no_expected = [DATASET[0], {"variables": {"country": "Chile"}}]
    error = refused(422, dataset=no_expected, evaluators=["length", "similarity"])
    assert error["code"] == "expected_missing" and error["evaluator"] == "similarity"
    assert error["items"] == [1] and "items 1" in error["message"]
    missing = [DATASET[0], {"variables": {}}]
    error = refused(422, dataset=missing)
    assert error["code"] == "missing_variables" and error["variables"] == ["country"]
    assert error["item"] == 1 and error["message"].startswith("dataset[1] with version 2:")
    extra = [{"variables": {"country": "Chile", "city": "Santiago"}}]
    assert refused(422, dataset=extra)["code"] == "unexpected_variables"
    error = refused(400, model="gpt-9")
    assert error["code"] == "unknown_model" and "gpt-9" in error["message"]
    judge = [{"name": "judge", "model": "claude-9"}]
    assert refused(400, evaluators=judge)["code"] == "unknown_model"
    similar = [{"name": "similarity", "model": "nope-embed"}]
    assert refused(400, evaluators=similar)["code"] == "unknown_embedding_model"
    assert refused(404, name="nope")["code"] == "template_not_found"
    for payload in (
        {"dataset": []},
        {"dataset": [{"variables": {"country": "X"}}] * 201},
        {"versions": []},
        {"versions": [0]},
        {"concurrency": 0},
        {"concurrency": 17},
        {"evaluators": [{"name": "judge", "temperature": 1}]},
        {"dataset": [{"variables": {"country": "X"}, "extra": 1}]},
        {"surprise": True},
        {"params": {"temperature": 5}},
    ):
        assert refused(422, **payload)["code"] == "invalid_request", payload
    # Nothing was stored for any of them.
    listed = httpx.get(
        f"{service.api}/prompt-templates/capital/evaluations", headers=service.headers()
    )
    assert listed.json()["count"] == 0
    bad_id = httpx.get(
        f"{service.api}/prompt-templates/capital/evaluations/{uuid.uuid4()}",
        headers=service.headers(),
    )
    assert error_of(bad_id, 404)["code"] == "evaluation_not_found"


def test_cancel_and_bounded_concurrency(service: RunningService, fake_openai: FakeOpenAI) -> None:
    make_template(service)
    fake_openai.delay_next(0.3, times=4)
    serial = run(service, versions=[2], dataset=DATASET + DATASET[:1], concurrency=1)
    assert serial["status"] == "done"
    took = _seconds(serial["finished_at"]) - _seconds(serial["started_at"])
    assert took >= 1.15  # four delayed calls, one at a time

    fake_openai.delay_next(2.0, times=20)
    response = evaluate(service, versions=[1, 2], concurrency=1)
    body = started(response)
    cancel_url = f"{service.url}{response.headers['location']}/cancel"
    forbidden = httpx.post(cancel_url, headers=service.headers(user="bob"))
    assert error_of(forbidden, 403)["code"] == "forbidden"
    cancelled = httpx.post(cancel_url, headers=service.headers())
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["finished_at"]
    assert cancelled.json()["error"] == "cancelled by the user"
    again = httpx.post(cancel_url, headers=service.headers(role="admin", user="root"))
    assert error_of(again, 409)["code"] == "not_running"
    time.sleep(0.3)
    after = poll(service, response.headers["location"])
    assert after["status"] == "cancelled" and after["results"] is None and after["id"] == body["id"]


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def test_interrupted_evaluations_run_again_after_a_restart(
    services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    svc = services.start()
    make_template(svc)
    services.close()  # the service is down; an evaluation was left behind mid-run
    evaluation_id = str(uuid.uuid4())
    request = {
        "versions": [2],
        "dataset": DATASET,
        "evaluators": [{"name": "exact", "ignore_case": True}],
        "model": None,
        "params": {},
        "concurrency": 2,
    }
    engine = sa.create_engine(sync_url(svc.settings.resolved_database_url))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ahc_prompt_evaluations (id, org_id, template_name, versions, "
                "request, status, total_items, done_items, created_by, created_at) VALUES "
                "(:id, 'org-a', 'capital', '[2]', :request, 'running', 3, 1, 'alice', "
                "CURRENT_TIMESTAMP)"
            ),
            {"id": evaluation_id, "request": json.dumps(request)},
        )
    engine.dispose()
    restarted = services.start()
    body = poll(restarted, f"/api/prompt-templates/capital/evaluations/{evaluation_id}")
    assert body["status"] == "done" and body["progress"] == {"done": 3, "total": 3}
    assert by_version(body)[2]["scores"]["exact"] == pytest.approx(2 / 3)
