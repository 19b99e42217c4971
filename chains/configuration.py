"""Per-call configuration of model calls, read from ``config["configurable"]``.

Shared by the chains and the graphs (``graphs.configuration`` re-exports it for the graphs).
LangServe forwards only ``RunnableConfig``, so these settings travel in ``configurable``
(not in LangGraph's ``context``). Server-owned keys (``org_id``, ``user_id``, and
``model_route``: the model resolved with the org's own key) are written by the service
after the client's, never taken from the client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeAlias

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from typing_extensions import TypedDict

if TYPE_CHECKING:
    from providers.registry import ModelRoute

LlmFactory: TypeAlias = "Callable[[ModelRoute | str | None], BaseChatModel]"
"""The chat model for a resolved route (a service run), else for a model name (``None``:
the default) on the service's key (a unit test): ``ModelRegistry.chat_model``."""


class ChatConfigurable(TypedDict, total=False):
    """The ``configurable`` keys a client may set (the schema the playground shows)."""

    thread_id: str
    model: str
    temperature: float
    max_tokens: int


@dataclass(kw_only=True)
class ChatConfiguration:
    """What ``call_model`` needs to know for one call."""

    model: str | None = field(
        default=None, metadata={"description": "Model name; default if unset."}
    )
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    org_id: str | None = field(default=None, metadata={"description": "Set by the server."})
    user_id: str | None = field(default=None, metadata={"description": "Set by the server."})
    model_route: ModelRoute | None = field(
        default=None,
        metadata={"description": "Set by the server: the model resolved with the org's key."},
    )
    tool_params: dict[str, Any] | None = field(
        default=None,
        metadata={
            "description": "Set by the server: this call's tools, tool_choice, "
            "parallel_tool_calls, functions, function_call and response_format (OpenAI's)."
        },
    )

    @classmethod
    def from_runnable_config(cls, config: RunnableConfig | None) -> ChatConfiguration:
        """Read the known keys of ``configurable``, ignoring the rest (without mutating it)."""
        configurable: dict[str, Any] = dict((config or {}).get("configurable") or {})
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in configurable.items() if k in names and v is not None})

    def chat_model(self, llm_factory: LlmFactory) -> BaseChatModel:
        """The model to call: the server's resolved route, else the named model."""
        return llm_factory(self.model_route or self.model)

    def call_params(self) -> dict[str, Any]:
        """Generation parameters to bind on the chat model."""
        params: dict[str, Any] = {}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if self.stop:
            params["stop"] = self.stop
        return {**params, **tool_call_params(self.tool_params)}


def tool_call_params(request_params: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI tool and format parameters as ``ChatOpenAI.bind`` takes them, unchanged.

    ``response_format`` travels in ``extra_body``: as a payload key, ``ChatOpenAI`` would
    switch to the SDK's ``parse`` helpers, which refuse non-strict tools and rewrite the
    answer; in the body it reaches the provider exactly as the client sent it.
    """
    if not request_params:
        return {}
    params = {k: v for k, v in request_params.items() if v is not None}
    response_format = params.pop("response_format", None)
    if response_format is not None:
        params["extra_body"] = {"response_format": response_format}
    return params
