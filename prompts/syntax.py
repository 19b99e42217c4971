"""What a template's text may contain: plain variable names, nothing that evaluates code.

Rendering uses LangChain's formatters. Python's ``str.format`` (behind f-string templates)
follows ``{x.attr}`` and ``{x[0]}`` into the objects it is given, and format specs such as
``{x:>999999999}`` allocate what they are told to; so f-string fields are restricted here,
before a template is stored, to bare identifiers with no conversion and no format spec,
whatever LangChain's own checks allow. Mustache is logic-less and LangChain's renderer only
walks dicts and lists, but partials (which would need a lookup table) are refused, dotted
paths must be names or list indexes, and section nesting is bounded, because nested
sections over one list multiply the output (see ``prompts.render``'s size guard).
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Formatter
from typing import Literal

from langchain_core.utils import mustache

from prompts.errors import PromptError

TemplateFormat = Literal["f-string", "mustache"]
TEMPLATE_FORMATS: tuple[TemplateFormat, ...] = ("f-string", "mustache")
MAX_SECTION_DEPTH = 4
"""Deepest mustache section nesting accepted (each level can multiply the output)."""

_SECTIONS = {"section", "inverted section"}
_VALUE_TAGS = {"variable", "no escape"}


def _refuse(field: str, why: str) -> PromptError:
    return PromptError(
        "invalid_template",
        f"template field {field!r} is not allowed: {why}",
        details={"field": field},
    )


def _check_name(field: str, name: str) -> None:
    if not name.isidentifier():
        raise _refuse(
            field,
            "use a plain variable name (no attribute access, indexing or positional fields)",
        )
    if name.startswith("__"):
        raise _refuse(field, "names starting with '__' are reserved")


def f_string_variables(text: str) -> set[str]:
    """The variables of an f-string text; refuses anything but ``{name}`` fields."""
    try:
        parsed = list(Formatter().parse(text))
    except ValueError as exc:  # a lone "{" or "}"
        raise PromptError(
            "invalid_template", f"invalid f-string template: {exc} (write {{{{ and }}}} for braces)"
        ) from exc
    found: set[str] = set()
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        shown = (
            "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        )
        shown += "}"
        _check_name(shown, field)
        if conversion is not None or spec:
            raise _refuse(shown, "conversions (!r) and format specs (:...) are not allowed")
        found.add(field)
    return found


@dataclass(frozen=True)
class MustacheStats:
    """What a checked mustache text uses: top-level variables, nesting, value tags."""

    variables: frozenset[str]
    depth: int
    tags: int


def mustache_stats(text: str) -> MustacheStats:
    """Check a mustache text; its top-level variables, deepest nesting and value tags."""
    try:
        tokens = list(mustache.tokenize(text))
    except mustache.ChevronError as exc:
        message = " ".join(str(exc).split())
        raise PromptError("invalid_template", f"invalid mustache template: {message}") from exc
    found: set[str] = set()
    depth = deepest = tags = 0
    for kind, key in tokens:
        if kind == "partial":
            raise _refuse("{{>" + key + "}}", "partials are not supported")
        if kind == "end":
            depth -= 1
            continue
        if kind not in _SECTIONS and kind not in _VALUE_TAGS:
            continue  # literals, comments, delimiter changes
        tags += 1
        if key != ".":
            shown = "{{" + key + "}}"
            head, *rest = key.split(".")
            _check_name(shown, head)
            for part in rest:
                if not part.isdigit():
                    _check_name(shown, part)
            if depth == 0:
                found.add(head)
        if kind in _SECTIONS:
            depth += 1
            deepest = max(deepest, depth)
            if depth > MAX_SECTION_DEPTH:
                raise PromptError(
                    "invalid_template",
                    f"mustache sections are nested deeper than {MAX_SECTION_DEPTH} levels",
                )
    return MustacheStats(frozenset(found), deepest, tags)


def text_variables(text: str, template_format: TemplateFormat) -> set[str]:
    """The variables ``text`` uses, after refusing what ``template_format`` must not allow."""
    if template_format == "f-string":
        return f_string_variables(text)
    return set(mustache_stats(text).variables)
