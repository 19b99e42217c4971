"""The prompt playground runnable: a stored template, rendered, sent to a chosen model.

Input: the template's variables, a JSON object (``{"text": "..."}`` for ``summarize``).
Output: the model's answer as text. Configurable fields, shown in the LangServe
playground's config panel: ``template`` (a name: the org's template or a system starter),
``version`` or ``label`` (default: the ``production`` label's version, else the latest),
``model``, ``temperature`` and ``max_tokens`` (default: the template's, else the service's).
Rendering follows ``prompts.render``'s rules (a missing or unused variable is a 422).
A version's ``tools`` and ``response_format`` are sent with it; a tool-call answer (no
text) comes out as the calls' JSON (``[{"name": ..., "args": {...}}]``), so the playground
shows what the model would call.

The template is resolved at call time for the org in the server-set
``configurable.org_id``, never the input's, so no call reaches another org's templates;
the model is the server's ``configurable.model_route`` (resolved with the org's key), else
the named one.
Served at ``/runnables/prompt``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolCall
from langchain_core.runnables import (
    ConfigurableField,
    Runnable,
    RunnableConfig,
    RunnableGenerator,
    RunnableLambda,
    RunnableSerializable,
)
from pydantic import ConfigDict, Field

if TYPE_CHECKING:
    from providers.registry import ModelRoute

DEFAULT_TEMPLATE = "summarize"
"""The template the playground opens with (a system starter every org has)."""
UNSET: Mapping[str, Any] = MappingProxyType(
    {"version": 0, "label": "", "model": "", "temperature": -1, "max_tokens": 0}
)
"""The configurable fields' "not given" values. Not None: the playground's form cannot show
nullable fields (its JSON-schema renderer fails on {"type": "null"}) nor submit a null default.
The server maps them back to "not given" (``services.runnable_config.PromptConfigurable``)."""
BOUND_PARAMS = ("top_p", "stop", "presence_penalty", "frequency_penalty", "seed")
"""Template params passed to the model as they are (temperature/max_tokens can be tuned)."""


class PlaygroundTemplate(Protocol):
    """What the runnable needs of a resolved template (``services.prompt_templates``)."""

    @property
    def model(self) -> str | None:
        """The template's default model."""

    @property
    def params(self) -> Mapping[str, Any]:
        """The template's default generation parameters."""

    @property
    def tools(self) -> Sequence[Mapping[str, Any]] | None:
        """The template's tools (OpenAI's shape), if any."""

    @property
    def response_format(self) -> Mapping[str, Any] | None:
        """The template's response format (OpenAI's shape), if any."""

    def render(self, variables: Mapping[str, Any]) -> list[BaseMessage]:
        """The rendered messages (422 ``PromptError`` for bad variables)."""


TemplateResolver = Callable[[str, str, int | None, str | None], Awaitable[PlaygroundTemplate]]
"""``(org_id, name, version, label)`` → the template version (404 when there is none)."""
LlmFactory: TypeAlias = "Callable[[ModelRoute | str | None], BaseChatModel]"
"""The route's chat model, else the named one's (``ModelRegistry.chat_model``)."""


class PromptPlayground(RunnableSerializable[dict[str, Any], str]):
    """Renders the configured template version with the input and calls the model."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    template: str = Field(default=DEFAULT_TEMPLATE, min_length=1, max_length=128)
    version: int = Field(default=UNSET["version"], ge=0)  # the defaults: see UNSET
    label: str = UNSET["label"]
    model: str = UNSET["model"]
    temperature: float = Field(default=UNSET["temperature"], ge=-1, le=2)
    max_tokens: int = Field(default=UNSET["max_tokens"], ge=0)
    resolver: TemplateResolver = Field(exclude=True)
    llm_factory: Callable[[Any], BaseChatModel] = Field(exclude=True)  # an LlmFactory

    @property
    def InputType(self) -> type[dict[str, Any]]:
        """The template's variables."""
        return dict[str, Any]

    @property
    def OutputType(self) -> type[str]:
        """The model's answer."""
        return str

    def params_for(self, template: PlaygroundTemplate) -> dict[str, Any]:
        """Generation parameters: the configured ones, else the template's defaults."""
        defaults = dict(template.params)
        params = {k: defaults[k] for k in BOUND_PARAMS if defaults.get(k) is not None}
        temperature = self.temperature if self.temperature >= 0 else defaults.get("temperature")
        max_tokens = self.max_tokens or defaults.get("max_tokens")
        if temperature is not None:
            params["temperature"] = temperature
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        if template.tools:
            params["tools"] = [dict(tool) for tool in template.tools]
        if template.response_format is not None:
            params["response_format"] = dict(template.response_format)
        return params

    async def _prepare(self, variables: dict[str, Any], config: RunnableConfig) -> Runnable:
        """Resolve and render for the server-set org; the rest of the run, with the model."""
        configurable = config.get("configurable") or {}
        org_id = configurable.get("org_id")
        if not org_id:
            raise ValueError("the prompt playground needs org_id set by the server")
        template = await self.resolver(
            org_id, self.template, self.version or None, self.label or None
        )
        messages = template.render(variables)

        async def rendered(_: Any) -> list[BaseMessage]:
            return messages

        llm = self.llm_factory(configurable.get("model_route") or self.model or template.model)
        params = self.params_for(template)
        model = llm.bind(**params) if params else llm
        answer = RunnableGenerator(_answer_text, name="answer_text")
        return RunnableLambda(rendered, name="rendered_prompt") | model | answer

    def _chain(self) -> Runnable[dict[str, Any], str]:
        return RunnableLambda(self._prepare, name="prompt")

    def invoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> str:
        """Synchronous calls are not supported (templates are read asynchronously)."""
        return self._chain().invoke(input, config, **kwargs)

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> str:
        """The model's answer to the rendered template."""
        return await self._chain().ainvoke(input, config, **kwargs)

    async def astream(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        """The answer's text as the model writes it."""
        async for chunk in self._chain().astream(input, config, **kwargs):
            yield chunk


async def _answer_text(chunks: AsyncIterator[BaseMessage]) -> AsyncIterator[str]:
    """The answer's text as it streams; a tool-call answer without text: the calls' JSON."""
    merged: AIMessageChunk | None = None
    calls: list[ToolCall] = []
    wrote = False
    async for chunk in chunks:
        if text := chunk.text:
            wrote = True
            yield text
        if isinstance(chunk, AIMessageChunk):  # streamed: the calls arrive in pieces
            merged = chunk if merged is None else merged + chunk
        elif isinstance(chunk, AIMessage):
            calls = chunk.tool_calls
    if merged is not None:
        calls = merged.tool_calls
    if not wrote and calls:
        yield calls_text(calls)


def calls_text(calls: Sequence[ToolCall]) -> str:
    """Tool calls as the text of an answer that has none: ``[{"name", "args"}]`` JSON."""
    return json.dumps([{"name": c["name"], "args": c["args"]} for c in calls], ensure_ascii=False)


def answer_text(message: BaseMessage) -> str:
    """A reply's text; for a tool-call answer without text, the calls (:func:`calls_text`)."""
    text = message.text
    if not text and isinstance(message, AIMessage) and message.tool_calls:
        return calls_text(message.tool_calls)
    return text


def build_prompt_playground(
    *,
    resolver: TemplateResolver,
    llm_factory: LlmFactory,
    models: Sequence[str] = (),
    default_model: str | None = None,
) -> Runnable[dict[str, Any], str]:
    """The playground runnable with its configurable fields (``models``: for the help text)."""
    known = f" Known: {', '.join(models)}." if models else ""
    fallback = f", else {default_model}" if default_model else ", else the service's default"
    return PromptPlayground(resolver=resolver, llm_factory=llm_factory).configurable_fields(
        template=ConfigurableField(
            id="template",
            name="Template",
            description="A stored template's name (the org's, or a starter: summarize, "
            "translate, rag-answer, email-draft).",
        ),
        version=ConfigurableField(
            id="version",
            name="Version",
            description="A version number (0: the production label's, else the latest).",
        ),
        label=ConfigurableField(
            id="label",
            name="Label",
            description="A label's version instead (empty: none; not with version).",
        ),
        model=ConfigurableField(
            id="model",
            name="Model",
            description=f"The chat model (empty: the template's{fallback}).{known}",
        ),
        temperature=ConfigurableField(
            id="temperature",
            name="Temperature",
            description="Sampling temperature, 0-2 (-1: the template's).",
        ),
        max_tokens=ConfigurableField(
            id="max_tokens",
            name="Max tokens",
            description="Reply token cap (0: the template's).",
        ),
    )
