"""The resolved route travels in ``configurable`` without exposing the org's key."""

from __future__ import annotations

from typing import Any

from accounting.events import CallContext
from auth.tokens import Principal
from core.config import Settings
from providers.registry import ModelRegistry, ModelRoute
from services.metering import MODEL_ROUTE, MeteredCall

ORG_KEY = "sk-org-secret-key-1234"


def registry() -> ModelRegistry:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="test",
        jwt_secret="test-secret-test-secret-test-secret!",
        openai_api_key="sk-service-key",
        openai_base_url="http://127.0.0.1:9/v1",
    )
    return ModelRegistry(settings)


def test_the_route_hides_its_key_and_the_configurable_holds_no_key_string() -> None:
    models = registry()
    route = models.resolve("gpt-4o-mini", org_key=ORG_KEY)
    assert ORG_KEY not in repr(route)
    context = CallContext.for_principal(Principal(org_id="org-a", user_id="alice"), "flow")
    call = MeteredCall(route=route, context=context, cap=None, gate=None)  # type: ignore[arg-type]
    configurable: dict[str, Any] = call.configurable()
    assert configurable[MODEL_ROUTE] is route and configurable["model"] == "gpt-4o-mini"
    assert ORG_KEY not in repr(configurable)
    assert ORG_KEY not in [v for v in configurable.values() if isinstance(v, str)]


def test_the_model_factory_uses_the_route_else_the_service_key() -> None:
    models = registry()
    route = models.resolve("gpt-4o-mini", org_key=ORG_KEY)
    assert isinstance(route, ModelRoute)
    org_model = models.chat_model(route)
    assert org_model.openai_api_key is not None
    assert org_model.openai_api_key.get_secret_value() == ORG_KEY
    service_model = models.chat_model("gpt-4o-mini")
    assert service_model.openai_api_key is not None
    assert service_model.openai_api_key.get_secret_value() == "sk-service-key"
