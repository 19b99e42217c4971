"""Prompt templates over HTTP: versions, labels, listing (with the starters), render.

Routes only translate HTTP to ``services.prompt_templates`` and back; the org always comes
from the token, so another org's template is a 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from api.deps import ServicesDep
from api.prompt_schemas import (
    LABEL_PATTERN,
    TEMPLATE_NAME_PATTERN,
    LabelPublic,
    LabelUpdate,
    RenderedMessage,
    RenderPublic,
    RenderRequest,
    TemplateCreate,
    TemplatePublic,
    TemplatesPublic,
)
from auth.deps import AdminPrincipal, CurrentPrincipal
from services.prompt_templates import TemplateDraft, TemplateView

router = APIRouter(prefix="/prompt-templates", tags=["prompt-templates"])

TemplateName = Annotated[str, Path(pattern=TEMPLATE_NAME_PATTERN)]
LabelName = Annotated[str, Path(pattern=LABEL_PATTERN)]
VersionQuery = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="A version number.")]
LabelQuery = Annotated[str | None, Query(pattern=LABEL_PATTERN, description="A label's version.")]
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


def template_public(view: TemplateView) -> TemplatePublic:
    """The API view of a template version."""
    content = view.content
    return TemplatePublic(
        name=view.name,
        scope=view.scope,
        description=view.description,
        tags=view.tags,
        version=view.version,
        latest_version=view.latest_version,
        labels=view.labels,
        template_format=content.template_format,
        messages=content.messages,
        input_variables=content.input_variables,
        optional_variables=content.optional_variables,
        model=content.model,
        params=content.params,
        tools=content.tools,
        response_format=content.response_format,
        content_hash=content.content_hash,
        created_by=view.created_by,
        created_at=view.created_at,
        updated_at=view.updated_at,
    )


@router.post(
    "",
    status_code=201,
    response_model=TemplatePublic,
    responses={200: {"model": TemplatePublic, "description": "Identical content: no new version."}},
    operation_id="prompt-templates-create",
)
async def create_template(
    body: TemplateCreate, response: Response, principal: CurrentPrincipal, services: ServicesDep
) -> TemplatePublic:
    """Create a template, or a new version of it (201); identical content answers 200."""
    draft = TemplateDraft(
        name=body.name,
        messages=[m.model_dump(exclude_none=True) for m in body.messages],
        template_format=body.template_format,
        input_variables=body.input_variables,
        model=body.model,
        params=body.params.model_dump(exclude_none=True),
        tools=body.tools,
        response_format=body.response_format,
        description=body.description,
        tags=body.tags,
    )
    view, created = await services.prompt_templates.create(principal, draft)
    response.status_code = 201 if created else 200
    return template_public(view)


@router.get("", response_model=TemplatesPublic, operation_id="prompt-templates-list")
async def list_templates(
    principal: CurrentPrincipal,
    services: ServicesDep,
    q: Annotated[str | None, Query(max_length=128, description="Name contains.")] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> TemplatesPublic:
    """The latest version of each template, by name: the org's and the starters it keeps."""
    views, count = await services.prompt_templates.list(
        principal.org_id, q=q, tag=tag, limit=limit, offset=offset
    )
    return TemplatesPublic(data=[template_public(v) for v in views], count=count)


@router.get("/{name}", response_model=TemplatePublic, operation_id="prompt-templates-get")
async def get_template(
    name: TemplateName,
    principal: CurrentPrincipal,
    services: ServicesDep,
    version: VersionQuery = None,
    label: LabelQuery = None,
) -> TemplatePublic:
    """One version: ``version``, else ``label``'s, else ``production``'s, else the latest."""
    view, _ = await services.prompt_templates.get(
        principal.org_id, name, version=version, label=label
    )
    return template_public(view)


@router.get(
    "/{name}/versions", response_model=TemplatesPublic, operation_id="prompt-templates-versions"
)
async def list_versions(
    name: TemplateName,
    principal: CurrentPrincipal,
    services: ServicesDep,
    limit: Limit = 50,
    offset: Offset = 0,
) -> TemplatesPublic:
    """Every version of the template, newest first."""
    views, count = await services.prompt_templates.versions(
        principal.org_id, name, limit=limit, offset=offset
    )
    return TemplatesPublic(data=[template_public(v) for v in views], count=count)


@router.delete("/{name}", status_code=204, operation_id="prompt-templates-delete")
async def delete_template(
    name: TemplateName, principal: AdminPrincipal, services: ServicesDep
) -> Response:
    """Delete the template with all its versions and labels (admins; 204)."""
    await services.prompt_templates.delete(principal, name)
    return Response(status_code=204)


@router.put(
    "/{name}/labels/{label}", response_model=LabelPublic, operation_id="prompt-templates-label"
)
async def put_label(
    name: TemplateName,
    label: LabelName,
    body: LabelUpdate,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> LabelPublic:
    """Point a label (``production``, ``staging``, any name) at a version; it can move later."""
    labels = await services.prompt_templates.set_label(principal, name, label, body.version)
    return LabelPublic(name=name, label=label, version=body.version, labels=labels)


@router.post(
    "/{name}/render",
    response_model=RenderPublic,
    response_model_exclude_unset=True,
    operation_id="prompt-templates-render",
)
async def render_template(
    name: TemplateName, body: RenderRequest, principal: CurrentPrincipal, services: ServicesDep
) -> RenderPublic:
    """The rendered messages; a missing or unused variable is a 422 that names it.

    ``tools`` and ``response_format`` are shown when the version carries them.
    """
    result = await services.prompt_templates.render(
        principal.org_id, name, body.variables, version=body.version, label=body.label
    )
    offer: dict[str, Any] = {"tools": result.tools, "response_format": result.response_format}
    return RenderPublic(
        name=result.name,
        version=result.version,
        scope=result.scope,
        messages=[RenderedMessage(**m) for m in result.messages],
        model=result.model,
        params=dict(result.params),
        **{k: v for k, v in offer.items() if v is not None},
    )
