"""OpenTelemetry: request and model-call spans reach an OTLP collector, nothing secret in them."""

from __future__ import annotations

import httpx

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.otlp_collector import FakeCollector, attributes
from tests.support.service import ServiceFactory

PROMPT = "My secret prompt about project Nightjar"


def test_requests_and_model_calls_are_traced_without_secrets(
    services: ServiceFactory, fake_openai: FakeOpenAI
) -> None:
    with FakeCollector() as collector:
        svc = services.start(otel_endpoint=collector.url, otel_service_name="ahc-test")
        token = svc.token()
        headers = {"Authorization": f"Bearer {token}"}
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
        plain = httpx.post(f"{svc.api}/chat/completions", headers=headers, json=body, timeout=30)
        assert plain.status_code == 200, plain.text
        streamed = httpx.post(f"{svc.api}/chat/stream", headers=headers, json=body, timeout=30)
        assert streamed.status_code == 200
        assert (
            httpx.get(f"{svc.api}/models?token={token}", headers=headers, timeout=30).status_code
            == 200
        )
        assert httpx.get(f"{svc.url}/healthz", timeout=30).status_code == 200
        services.close()  # the lifespan's end flushes the batched spans

        server = {s.name: s for s in collector.spans if s.kind == s.SPAN_KIND_SERVER}
        assert {"POST /api/chat/completions", "POST /api/chat/stream", "GET /api/models"} <= set(
            server
        )
        assert not any("healthz" in name for name in server)
        calls = [s for s in collector.spans if s.kind == s.SPAN_KIND_CLIENT]
        assert len(calls) == 2  # one per model call, plain and streamed
        completion = server["POST /api/chat/completions"]
        mine = [c for c in calls if c.parent_span_id == completion.span_id]
        assert len(mine) == 1 and mine[0].trace_id == completion.trace_id
        seen = attributes(mine[0])
        assert seen["gen_ai.request.model"] == "gpt-4o-mini"
        assert seen["gen_ai.usage.input_tokens"] > 0 and seen["gen_ai.usage.output_tokens"] > 0
        assert seen["ahc.org_id"] == "org-a" and seen["ahc.route"] == "chat.completions"
        assert attributes(completion)["http.status_code"] == 200

        # Nothing secret anywhere in what was exported: no token, no prompt, no answer.
        exported = b"".join(collector.raw)
        assert token.encode() not in exported
        assert b"Nightjar" not in exported and b"echo:" not in exported
        models = attributes(server["GET /api/models"])
        assert all("token" not in str(v) for v in models.values()), models


def test_tracing_is_off_by_default(services: ServiceFactory) -> None:
    svc = services.start()
    assert svc.app.state.services.accountant._tracer is None
