"""Prompt evaluations over HTTP: start one (202), poll it, list them, cancel one.

Routes translate HTTP to ``services.prompt_evaluations``; the org comes from the token, so
another org's evaluation is a 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from api.deps import ServicesDep
from api.prompt_schemas import (
    EVALUATION_ID_PATTERN,
    TEMPLATE_NAME_PATTERN,
    EvaluationCreate,
    EvaluationItem,
    EvaluationProgress,
    EvaluationPublic,
    EvaluationResults,
    EvaluationsPublic,
    EvaluationStatus,
)
from auth.deps import CurrentPrincipal
from db.models import PromptEvaluation
from services.prompt_evaluations import DatasetItem, EvaluationDraft

router = APIRouter(prefix="/prompt-templates", tags=["prompt-evaluations"])

TemplateName = Annotated[str, Path(pattern=TEMPLATE_NAME_PATTERN)]
EvaluationId = Annotated[str, Path(pattern=EVALUATION_ID_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


def evaluation_location(name: str, evaluation_id: str) -> str:
    """Where an evaluation is polled."""
    return f"/api/prompt-templates/{name}/evaluations/{evaluation_id}"


def evaluation_public(row: PromptEvaluation, *, details: bool = True) -> EvaluationPublic:
    """The API view of an evaluation; without ``details``, no dataset and no items."""
    request: dict[str, Any] = row.request
    results = row.results
    if results is not None and not details:
        results = {
            **results,
            "versions": [{**v, "items": None} for v in results.get("versions", [])],
        }
    return EvaluationPublic(
        id=row.id,
        name=row.template_name,
        versions=list(row.versions),
        status=row.status,
        error=row.error,
        progress=EvaluationProgress(done=row.done_items, total=row.total_items),
        evaluators=list(request.get("evaluators") or []),
        model=request.get("model"),
        params=dict(request.get("params") or {}),
        concurrency=int(request.get("concurrency") or 1),
        dataset_size=len(request.get("dataset") or []),
        dataset=[EvaluationItem(**item) for item in request.get("dataset") or []]
        if details
        else None,
        results=EvaluationResults.model_validate(results) if results is not None else None,
        created_by=row.created_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


@router.post(
    "/{name}/evaluate",
    status_code=202,
    response_model=EvaluationPublic,
    operation_id="prompt-templates-evaluate",
)
async def evaluate(
    name: TemplateName,
    body: EvaluationCreate,
    response: Response,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> EvaluationPublic:
    """Run versions over a dataset in the background (202; poll the ``Location``)."""
    draft = EvaluationDraft(
        dataset=[DatasetItem(variables=i.variables, expected=i.expected) for i in body.dataset],
        versions=body.versions,
        evaluators=[
            e if isinstance(e, str) else e.model_dump(exclude_none=True) for e in body.evaluators
        ],
        model=body.model,
        params=body.params.model_dump(exclude_none=True),
        concurrency=body.concurrency,
    )
    row = await services.prompt_evaluations.start(principal, name, draft)
    response.headers["Location"] = evaluation_location(row.template_name, row.id)
    return evaluation_public(row)


@router.get(
    "/{name}/evaluations",
    response_model=EvaluationsPublic,
    operation_id="prompt-evaluations-list",
)
async def list_evaluations(
    name: TemplateName,
    principal: CurrentPrincipal,
    services: ServicesDep,
    status: EvaluationStatus | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> EvaluationsPublic:
    """The template's evaluations, newest first, with per-version results but no items."""
    rows, count = await services.prompt_evaluations.page(
        principal.org_id, name, status=status, limit=limit, offset=offset
    )
    return EvaluationsPublic(data=[evaluation_public(r, details=False) for r in rows], count=count)


@router.get(
    "/{name}/evaluations/{evaluation_id}",
    response_model=EvaluationPublic,
    operation_id="prompt-evaluations-get",
)
async def get_evaluation(
    name: TemplateName,
    evaluation_id: EvaluationId,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> EvaluationPublic:
    """One evaluation: status, progress and, once done, results with every item."""
    row = await services.prompt_evaluations.get(principal.org_id, name, evaluation_id)
    return evaluation_public(row)


@router.post(
    "/{name}/evaluations/{evaluation_id}/cancel",
    response_model=EvaluationPublic,
    operation_id="prompt-evaluations-cancel",
)
async def cancel_evaluation(
    name: TemplateName,
    evaluation_id: EvaluationId,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> EvaluationPublic:
    """Stop a queued or running evaluation (its creator or an admin; 409 when finished)."""
    row = await services.prompt_evaluations.cancel(principal, name, evaluation_id)
    return evaluation_public(row)
