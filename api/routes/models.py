"""``GET /api/models``: the configured models, in OpenAI's list format."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ServicesDep
from api.schemas import ModelCard, ModelList
from auth.deps import CurrentPrincipal

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelList, operation_id="models-list")
async def list_models(services: ServicesDep, _principal: CurrentPrincipal) -> ModelList:
    """Models a client may name, the default first."""
    registry = services.registry
    return ModelList(
        data=[
            ModelCard(id=name, created=services.started_at, owned_by=registry.owner(name))
            for name in registry.names()
        ]
    )
