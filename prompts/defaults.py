"""The one rule by which a template version's defaults fill what a request leaves unset.

Every flow uses it: chat (relay and threads), RAG, the playground's runnable config and
evaluations. The request wins; a key given as ``None`` counts as not set (``0`` is a
value); the template's ``max_tokens`` does not apply when the request caps its reply under
either name (``max_tokens``, ``max_completion_tokens``); every other param (``stop``
included) applies as it is. The template's ``tools`` apply unless the request offers its
own (``tools`` or the legacy ``functions``), its ``response_format`` unless the request
sets one; a flow that sends neither (RAG, a ``max_tokens``-only config) just ignores them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

# Template params that map onto a request field of another name when the request set one.
_REPLY_LIMIT_KEYS = frozenset({"max_tokens", "max_completion_tokens"})
# Request keys by which a client offers its own tools (the template's then do not apply).
_TOOL_OFFER_KEYS = frozenset({"tools", "functions"})


class TemplateDefaults(Protocol):
    """What :func:`apply_template_defaults` reads of a template version."""

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


def apply_template_defaults(
    template: TemplateDefaults | None, given: Mapping[str, Any]
) -> dict[str, Any]:
    """``given`` (a request's model and params) with the template's defaults where it lacks them.

    The one rule: the request wins; a key given as ``None`` counts as not set (``0`` is a
    value); the template's ``max_tokens`` does not apply when the request sets
    ``max_tokens`` or ``max_completion_tokens``; every other param (``stop`` included)
    applies as it is; ``tools`` apply unless the request sets ``tools`` or ``functions``,
    ``response_format`` unless it sets one. The result has no ``None`` values.
    """
    merged = {k: v for k, v in given.items() if v is not None}
    if template is None:
        return merged
    if template.model and "model" not in merged:
        merged["model"] = template.model
    capped = any(k in merged for k in _REPLY_LIMIT_KEYS)
    for key, value in template.params.items():
        if value is None or key in merged or (key == "max_tokens" and capped):
            continue
        merged[key] = value
    if template.tools and not any(k in merged for k in _TOOL_OFFER_KEYS):
        merged["tools"] = [dict(tool) for tool in template.tools]
    if template.response_format is not None and "response_format" not in merged:
        merged["response_format"] = dict(template.response_format)
    return merged
