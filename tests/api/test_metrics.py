"""``GET /metrics``: closed by default, token-guarded, and counting what the issue lists.

The collectors are process-wide (as in production), so each test uses its own org and
compares values before and after.
"""

from __future__ import annotations

import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService, ServiceFactory

TOKEN = "scrape-secret-0123456789"
SCRAPE = {"Authorization": f"Bearer {TOKEN}"}


def scrape(service: RunningService) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, by name and labels."""
    response = httpx.get(f"{service.url}/metrics", headers=SCRAPE)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def chat(service: RunningService, org: str, **extra: object) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(
        f"{service.api}/chat/completions", headers=service.headers(org), json=body, timeout=30
    )


def test_closed_unless_a_token_is_set(service: RunningService) -> None:
    response = httpx.get(f"{service.url}/metrics", headers=SCRAPE)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_only_the_bearer_of_the_token_may_scrape(services: ServiceFactory) -> None:
    service = services.start(metrics_token=TOKEN)
    url = f"{service.url}/metrics"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        service.headers(),  # a user's JWT is not the scrape token
    ):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "invalid_metrics_token"
        assert TOKEN not in response.text
    assert httpx.get(url, headers=SCRAPE).status_code == 200
    assert "/metrics" not in httpx.get(f"{service.url}/openapi.json").text


def test_requests_by_route_template_and_status(services: ServiceFactory) -> None:
    service = services.start(metrics_token=TOKEN)
    org = f"org-{uuid.uuid4().hex[:8]}"
    before = scrape(service)
    assert chat(service, org).status_code == 200
    marker = uuid.uuid4().hex
    thread = httpx.get(f"{service.api}/chat/threads/t-{marker}", headers=service.headers(org))
    httpx.get(f"{service.url}/no/such/{marker}")
    after = scrape(service)

    def count(route: str, method: str, status: int) -> float:
        labels = {"route": route, "method": method, "status": str(status)}
        name = "ahc_http_request_duration_seconds_count"
        return value(after, name, **labels) - value(before, name, **labels)

    assert count("/api/chat/completions", "POST", 200) == 1
    assert count("/api/chat/threads/{thread_id}", "GET", thread.status_code) == 1
    assert count("unmatched", "GET", 404) == 1
    assert not any(marker in str(labels) for _, labels in after)  # paths never become labels


def test_usage_upstream_cache_and_limits(services: ServiceFactory, fake_openai: FakeOpenAI) -> None:
    service = services.start(metrics_token=TOKEN)
    org = f"org-{uuid.uuid4().hex[:8]}"
    before = scrape(service)
    assert chat(service, org, temperature=0).status_code == 200
    assert chat(service, org, temperature=0).status_code == 200  # from the cache
    fake_openai.fail_next(status=500, times=10)
    assert chat(service, org).status_code >= 500
    fake_openai.reset()
    limits = httpx.put(
        f"{service.api}/limits",
        headers=service.headers(org, "boss", "admin"),
        json={"requests_per_minute": 1},
    )
    assert limits.status_code == 200, limits.text
    assert chat(service, org).status_code == 200
    assert chat(service, org).status_code == 429
    after = scrape(service)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    model = {"org": org, "model": "gpt-4o-mini"}
    assert delta("ahc_tokens_total", **model, kind="prompt") > 0
    assert delta("ahc_tokens_total", **model, kind="completion") > 0
    assert delta("ahc_cost_usd_total", **model) > 0
    assert delta("ahc_cache_hits_total", model="gpt-4o-mini") == 1
    ok = {"provider": "openai", "status": "ok"}
    assert delta("ahc_upstream_duration_seconds_count", **ok) == 2
    assert delta("ahc_upstream_errors_total", provider="openai", code="upstream_error") == 1
    rejected = {"limit": "requests_per_minute", "scope": "org"}
    assert delta("ahc_limit_rejections_total", **rejected) == 1
