"""LangChain's own standard chat-model tests, through the service.

``ChatModelIntegrationTests`` (``langchain-tests``) drives ``ChatOpenAI`` pointed at the live
service (``base_url=<service>/api``, ``api_key=<JWT>``) with tool calling and structured
output on; the fake OpenAI upstream answers as a model would (tool arguments taken from the
request, JSON valid for the requested schema). One service for the module keeps it quick.
The suite runs twice: as a client sends it (``temperature=0``, so repeated requests are
answered from the response cache, replayed) and with ``cache: false`` (every call relayed).

Off, with the reason (``supports_*``), each a feature the gateway relays but this setup
cannot prove: image, PDF and audio inputs (the tests download media from the internet and
the fake upstream has no vision or hearing), Anthropic-format inputs (an OpenAI-compatible
API), and the recorded-cassette timing test (speed is measured in ``bench/``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService, ServiceFactory

_LIVE: dict[str, RunningService] = {}


@pytest.fixture(scope="module", autouse=True)
def live_service(
    tmp_path_factory: pytest.TempPathFactory, _fake_openai_session: FakeOpenAI
) -> Iterator[RunningService]:
    """One service (SQLite, the fake upstream) for every standard test of the module."""
    factory = ServiceFactory(
        tmp_path_factory.mktemp("standard"), _fake_openai_session.base_url, None
    )
    _LIVE["service"] = service = factory.start()
    yield service
    _LIVE.clear()
    factory.close()


@pytest.fixture(autouse=True)
def _fresh_fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The fake upstream's defaults for each test (its fixture resets it)."""
    return fake_openai


class TestChatOpenAIThroughTheService(ChatModelIntegrationTests):
    """``ChatOpenAI`` against the gateway, as any LangChain application would use it."""

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        service = _LIVE["service"]
        return {
            "model": "gpt-4o-mini",
            "base_url": service.api,
            "api_key": service.token(),
            "stream_usage": True,
            "max_retries": 0,
        }

    @property
    def model_override_value(self) -> str:
        return "gpt-4o"

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    # Relayed as they are, but not provable here (see the module docstring).
    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def supports_image_urls(self) -> bool:
        return False

    @property
    def supports_image_tool_message(self) -> bool:
        return False

    @property
    def supports_pdf_inputs(self) -> bool:
        return False

    @property
    def supports_pdf_tool_message(self) -> bool:
        return False

    @property
    def supports_audio_inputs(self) -> bool:
        return False

    @property
    def supports_anthropic_inputs(self) -> bool:
        return False

    @property
    def enable_vcr_tests(self) -> bool:
        return False


class TestChatOpenAIThroughTheServiceUncached(TestChatOpenAIThroughTheService):
    """The same, every call relayed to the upstream (``cache: false``), none replayed."""

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {**super().chat_model_params, "extra_body": {"cache": False}}
