"""Stored prompt templates used by name from chat and RAG (``template: {name, ...}``).

The rules, the same for every flow:

- the template is the caller's org's (or a system starter), resolved by
  ``services.prompt_templates``: ``version``, else ``label``, else ``production``, else the
  latest; an unknown name, version or label is a 404 naming it;
- its default ``model`` and ``params`` apply where the request sets none, by one rule for
  every flow (:func:`apply_template_defaults`): the request wins; an explicit ``null``
  counts as not set, ``0`` as set; the ``max_tokens`` default does not apply when the
  request caps its reply under either name (``max_tokens``, ``max_completion_tokens``);
  the version's ``tools`` apply unless the request offers its own (``tools`` or
  ``functions``), its ``response_format`` unless the request sets one; the merged request
  is then checked like any other (a ``tool_choice`` must name one of the tools in effect);
- chat: the rendered messages come first, then the request's ``messages``; with a
  ``thread_id`` they are the turn's new messages, stored in the thread like messages the
  client sent (a rendered system message replaces the thread's, as any new one does);
  bad variables are the template's 422 (missing or unused variables, wrong types);
- RAG: the template is the answer prompt; the service supplies ``context`` and
  ``question``, so the template must use exactly those two (an optional ``history``
  placeholder aside) and the request's ``variables`` must be empty (422 otherwise); the
  answer is text, so a version's tools and response format do not apply.

Usage events record the resolved name and version (``CallContext.template_name`` and
``template_version``).
"""

from __future__ import annotations

import dataclasses

from accounting.events import CallContext
from chains.rag import ANSWER_VARIABLES, check_answer_prompt
from prompts.defaults import apply_template_defaults
from prompts.errors import PromptError, names
from services.gateway_types import ChatRequest, TemplateRef, parse_messages
from services.prompt_templates import PromptTemplates, ResolvedTemplate


async def resolve(templates: PromptTemplates, org_id: str, ref: TemplateRef) -> ResolvedTemplate:
    """The version ``ref`` names, for ``org_id`` (404 ``ApiError`` when there is none)."""
    return await templates.resolve(org_id, ref.name, version=ref.version, label=ref.label)


def with_template(context: CallContext, template: ResolvedTemplate | None) -> CallContext:
    """``context`` recording the template's name and version in its usage events."""
    if template is None:
        return context
    return dataclasses.replace(
        context, template_name=template.name, template_version=template.version
    )


async def apply_chat_template(
    templates: PromptTemplates, org_id: str, request: ChatRequest
) -> tuple[ChatRequest, ResolvedTemplate | None]:
    """The request with its template rendered in front of its messages and its defaults set.

    A request without ``template`` is returned unchanged.
    """
    if request.template is None:
        return request, None
    template = await resolve(templates, org_id, request.template)
    rendered = parse_messages(template.render_openai(request.template.variables))
    params = apply_template_defaults(template, request.given())
    model = params.pop("model", None)
    return (
        dataclasses.replace(
            request,
            messages=[*rendered, *request.messages],
            model=model,
            params=params,
            template=None,
        ),
        template,
    )


async def rag_answer_template(
    templates: PromptTemplates, org_id: str, ref: TemplateRef
) -> ResolvedTemplate:
    """The answer prompt ``ref`` names, checked against what the RAG graph supplies."""
    if ref.variables:
        raise PromptError(
            "unexpected_variables",
            f"the service supplies the answer prompt's variables ({names(ANSWER_VARIABLES)}); "
            f"'variables' must be empty, got: {names(ref.variables)}",
            details={"variables": sorted(ref.variables)},
        )
    template = await resolve(templates, org_id, ref)
    try:
        check_answer_prompt(template.prompt)
    except ValueError as exc:
        raise PromptError(
            "invalid_answer_prompt",
            f"template {template.name!r} version {template.version} cannot be a RAG answer "
            f"prompt: {exc}",
            details={"name": template.name, "version": template.version},
        ) from exc
    return template
