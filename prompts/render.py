"""Stored messages ⇄ LangChain ``ChatPromptTemplate``; rendering with checked variables.

A stored message is ``{"role": "system"|"user"|"assistant", "content": <text>}`` or a
placeholder for a list of messages (history), LangChain's ``MessagesPlaceholder``:
``{"role": "placeholder", "content": "{history}", "optional": true}`` (optional unless
told otherwise, like LangChain's ``("placeholder", "{history}")``).

Variable rules, the same for every flow that renders a template:

- used variables are the prompt's ``input_variables`` (required, required placeholders
  included) and its ``optional_variables`` (optional placeholders);
- declared variables must contain every required one and may name optional placeholders,
  nothing else (422 ``input_variables_mismatch`` naming the difference);
- rendering without a required variable is a 422 ``missing_variables`` naming it; a
  variable the template does not use is a 422 ``unexpected_variables`` naming it (a typo
  must not silently render an empty prompt);
- f-string values are strings or numbers; mustache values are any JSON (sections iterate
  lists); placeholder values are lists of ``{role, content}`` messages.

Mustache renders ``{{x}}`` HTML-escaped, as LangChain does (the playground runnable uses the
same ``ChatPromptTemplate``): use ``{{{x}}}`` or ``{{&x}}`` for raw text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompts import (
    AIMessagePromptTemplate,
    ChatPromptTemplate,
    HumanMessagePromptTemplate,
    MessagesPlaceholder,
    SystemMessagePromptTemplate,
)

from prompts.errors import PromptError, names
from prompts.syntax import TemplateFormat, mustache_stats, text_variables

TEXT_ROLES = ("system", "user", "assistant")
PLACEHOLDER = "placeholder"
MAX_RENDER_CHARS = 5_000_000
"""Refuse a mustache render whose worst-case output is larger (nested sections multiply)."""

TextPrompt = SystemMessagePromptTemplate | HumanMessagePromptTemplate | AIMessagePromptTemplate
_TEXT_PROMPTS = (SystemMessagePromptTemplate, HumanMessagePromptTemplate, AIMessagePromptTemplate)
_PROMPT_CLASSES: dict[str, type[TextPrompt]] = {
    "system": SystemMessagePromptTemplate,
    "user": HumanMessagePromptTemplate,
    "assistant": AIMessagePromptTemplate,
}
_MESSAGE_CLASSES: dict[str, type[BaseMessage]] = {
    "system": SystemMessage,
    "user": HumanMessage,
    "assistant": AIMessage,
}
_OPENAI_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def placeholder_name(content: str) -> str:
    """The variable of a placeholder: ``{history}`` (or ``{{history}}``) → ``history``."""
    name = content.strip()
    braced = name.startswith("{") and name.endswith("}")
    for _ in range(2):
        if name.startswith("{") and name.endswith("}"):
            name = name[1:-1].strip()
    if not braced or not name.isidentifier() or name.startswith("__"):
        raise PromptError(
            "invalid_template",
            f"a placeholder's content must be a variable name in braces, e.g. '{{history}}'; "
            f"got {content!r}",
        )
    return name


def normalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The canonical stored form of messages (placeholders as ``{name}`` with ``optional``)."""
    if not messages:
        raise PromptError("invalid_template", "a template needs at least one message")
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if not isinstance(content, str):
            raise PromptError("invalid_template", f"messages[{index}].content must be a string")
        if role == PLACEHOLDER:
            name = placeholder_name(content)
            optional = message.get("optional", True)
            if not isinstance(optional, bool):
                raise PromptError(
                    "invalid_template", f"messages[{index}].optional must be true or false"
                )
            out.append({"role": PLACEHOLDER, "content": "{" + name + "}", "optional": optional})
        elif role in TEXT_ROLES:
            if "optional" in message:
                raise PromptError(
                    "invalid_template", f"messages[{index}]: only placeholders can be optional"
                )
            out.append({"role": role, "content": content})
        else:
            roles = ", ".join((*TEXT_ROLES, PLACEHOLDER))
            raise PromptError(
                "invalid_template", f"messages[{index}].role must be one of {roles}; got {role!r}"
            )
    return out


def build_prompt(
    messages: Sequence[Mapping[str, Any]], template_format: TemplateFormat
) -> ChatPromptTemplate:
    """A ``ChatPromptTemplate`` from normalized messages, after the syntax checks."""
    parts: list[TextPrompt | MessagesPlaceholder] = []
    placeholders: set[str] = set()
    texts: set[str] = set()
    for message in normalize_messages(messages):
        role, content = message["role"], message["content"]
        if role == PLACEHOLDER:
            placeholders.add(name := placeholder_name(content))
            parts.append(MessagesPlaceholder(name, optional=message["optional"]))
            continue
        texts |= text_variables(content, template_format)  # refuses hostile fields first
        try:
            parts.append(
                _PROMPT_CLASSES[role].from_template(content, template_format=template_format)
            )
        except ValueError as exc:
            raise PromptError("invalid_template", f"invalid template: {exc}") from exc
    if clash := placeholders & texts:
        raise PromptError(
            "invalid_template",
            f"variables used both as a placeholder and in a text: {names(clash)}",
            details={"variables": sorted(clash)},
        )
    try:
        return ChatPromptTemplate.from_messages(parts, template_format=template_format)
    except ValueError as exc:
        raise PromptError("invalid_template", f"invalid template: {exc}") from exc


def messages_of(prompt: ChatPromptTemplate) -> list[dict[str, Any]]:
    """The stored form of a code-defined prompt (so a starter can reuse a chain's prompt)."""
    out: list[dict[str, Any]] = []
    for part in prompt.messages:
        if isinstance(part, MessagesPlaceholder):
            out.append(
                {
                    "role": PLACEHOLDER,
                    "content": "{" + part.variable_name + "}",
                    "optional": part.optional,
                }
            )
        elif isinstance(part, _TEXT_PROMPTS):
            role = next(r for r, cls in _PROMPT_CLASSES.items() if isinstance(part, cls))
            out.append({"role": role, "content": str(getattr(part.prompt, "template", ""))})
        else:
            raise TypeError(f"cannot store a {type(part).__name__} message")
    return out


def required_variables(prompt: ChatPromptTemplate) -> list[str]:
    """Variables a render must supply (required placeholders included)."""
    return sorted(prompt.input_variables)


def optional_variables(prompt: ChatPromptTemplate) -> list[str]:
    """Variables a render may supply: optional placeholders."""
    return sorted(set(prompt.optional_variables) - set(prompt.input_variables))


def check_declared(declared: Iterable[str] | None, prompt: ChatPromptTemplate) -> list[str]:
    """The template's input variables, after checking the declared ones against the text.

    ``None`` (nothing declared) takes the used variables as they are.
    """
    required = set(required_variables(prompt))
    if declared is None:
        return sorted(required)
    given = set(declared)
    undeclared = required - given
    unused = given - required - set(optional_variables(prompt))
    if undeclared or unused:
        parts = []
        if undeclared:
            parts.append(f"used but not declared: {names(undeclared)}")
        if unused:
            parts.append(f"declared but not used: {names(unused)}")
        raise PromptError(
            "input_variables_mismatch",
            "input_variables do not match the messages: " + "; ".join(parts),
            details={"undeclared": sorted(undeclared), "unused": sorted(unused)},
        )
    return sorted(required)


def template_format_of(prompt: ChatPromptTemplate) -> TemplateFormat:
    """The format of a built prompt (its text messages share one)."""
    for part in prompt.messages:
        if isinstance(part, _TEXT_PROMPTS):
            return cast(TemplateFormat, getattr(part.prompt, "template_format", "f-string"))
    return "f-string"


def _placeholder_messages(name: str, value: Any) -> list[BaseMessage]:
    if not isinstance(value, list):
        raise PromptError(
            "invalid_variables",
            f"variable {name!r} is a placeholder: give a list of {{role, content}} messages",
            details={"variables": [name]},
        )
    messages: list[BaseMessage] = []
    for item in value:
        if isinstance(item, BaseMessage):  # internal callers (RAG history)
            messages.append(item)
            continue
        role = item.get("role") if isinstance(item, Mapping) else None
        content = item.get("content") if isinstance(item, Mapping) else None
        if role not in _MESSAGE_CLASSES or not isinstance(content, str):
            raise PromptError(
                "invalid_variables",
                f"variable {name!r}: each message needs a role (system, user, assistant) "
                "and a string content",
                details={"variables": [name]},
            )
        messages.append(_MESSAGE_CLASSES[role](content=content))
    return messages


def _json_stats(values: Iterable[Any]) -> tuple[int, int]:
    """The longest list and the longest scalar (as text) in JSON values, iteratively."""
    longest_list = longest_text = 0
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            longest_list = max(longest_list, len(value))
            stack.extend(value)
        else:
            longest_text = max(longest_text, len(str(value)))
    return longest_list, longest_text


def _check_render_size(prompt: ChatPromptTemplate, values: Mapping[str, Any]) -> None:
    """Refuse a mustache render whose worst case is huge (``{{#a}}{{#a}}...`` over a list)."""
    texts = [
        str(getattr(part.prompt, "template", ""))
        for part in prompt.messages
        if isinstance(part, _TEXT_PROMPTS)
    ]
    stats = [mustache_stats(text) for text in texts]
    depth = max((s.depth for s in stats), default=0)
    if depth == 0:
        return
    longest_list, longest_text = _json_stats(values.values())
    per_pass = sum(len(t) for t in texts) + sum(s.tags for s in stats) * longest_text
    if per_pass * max(longest_list, 1) ** depth > MAX_RENDER_CHARS:
        raise PromptError(
            "render_too_large",
            f"these variables would make the rendered prompt larger than {MAX_RENDER_CHARS} "
            "characters (nested sections over long lists)",
        )


def _text_value(name: str, value: Any, template_format: TemplateFormat) -> Any:
    if template_format == "mustache":
        return value
    if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise PromptError(
        "invalid_variables",
        f"variable {name!r} must be a string or a number in an f-string template",
        details={"variables": [name]},
    )


def render_messages(prompt: ChatPromptTemplate, variables: Mapping[str, Any]) -> list[BaseMessage]:
    """Render with the rules above; every failure is a 422 naming the variables."""
    required = set(required_variables(prompt))
    optional = set(optional_variables(prompt))
    missing = required - set(variables)
    if missing:
        raise PromptError(
            "missing_variables",
            f"missing template variables: {names(missing)}",
            details={"variables": sorted(missing)},
        )
    unexpected = set(variables) - required - optional
    if unexpected:
        raise PromptError(
            "unexpected_variables",
            f"variables not used by the template: {names(unexpected)}",
            details={"variables": sorted(unexpected)},
        )
    template_format = template_format_of(prompt)
    placeholders = {
        part.variable_name for part in prompt.messages if isinstance(part, MessagesPlaceholder)
    }
    values: dict[str, Any] = {}
    for name, value in variables.items():
        if name in placeholders:
            values[name] = _placeholder_messages(name, value)
        else:
            values[name] = _text_value(name, value, template_format)
    if template_format == "mustache":
        _check_render_size(prompt, values)
    try:
        return prompt.format_messages(**values)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise PromptError("render_failed", f"the template could not be rendered: {exc}") from exc


def to_openai(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """Rendered messages as OpenAI ``{role, content}`` dicts."""
    return [{"role": _OPENAI_ROLES.get(m.type, m.type), "content": m.text} for m in messages]
