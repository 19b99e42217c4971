"""A template version's content, checked once, and its hash (same content → same version)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.prompts import ChatPromptTemplate

from prompts.render import (
    build_prompt,
    check_declared,
    normalize_messages,
    optional_variables,
)
from prompts.syntax import TemplateFormat


@dataclass(frozen=True)
class TemplateContent:
    """What one version holds, normalized: equal contents hash the same."""

    messages: list[dict[str, Any]]
    template_format: TemplateFormat
    input_variables: list[str]
    optional_variables: list[str]
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None

    @property
    def content_hash(self) -> str:
        """sha256 of the canonical JSON of everything a version stores (not who or when).

        ``tools`` and ``response_format`` count only when set, so the versions written
        before templates could carry them keep their hashes.
        """
        stored: dict[str, Any] = {
            "messages": self.messages,
            "template_format": self.template_format,
            "input_variables": self.input_variables,
            "model": self.model,
            "params": self.params,
        }
        if self.tools is not None:
            stored["tools"] = self.tools
        if self.response_format is not None:
            stored["response_format"] = self.response_format
        canonical = json.dumps(
            stored,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def checked_content(
    messages: Sequence[Mapping[str, Any]],
    template_format: TemplateFormat,
    *,
    input_variables: Iterable[str] | None = None,
    model: str | None = None,
    params: Mapping[str, Any] | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    response_format: Mapping[str, Any] | None = None,
) -> tuple[TemplateContent, ChatPromptTemplate]:
    """Validate a submitted version (syntax, declared variables); its content and prompt.

    ``tools`` and ``response_format`` are taken as given: the caller checks them as a chat
    request's (``services.tool_checks``). An empty ``tools`` list counts as none.

    Raises:
        PromptError: 422 ``invalid_template`` or ``input_variables_mismatch``.
    """
    normalized = normalize_messages(messages)
    prompt = build_prompt(normalized, template_format)
    content = TemplateContent(
        messages=normalized,
        template_format=template_format,
        input_variables=check_declared(input_variables, prompt),
        optional_variables=optional_variables(prompt),
        model=model,
        params={k: v for k, v in (params or {}).items() if v is not None},
        tools=[dict(t) for t in tools] if tools else None,
        response_format=dict(response_format) if response_format is not None else None,
    )
    return content, prompt
