"""``GET /api/models``: the chat and embedding models, in OpenAI's list format.

Each entry says what it is for (``capabilities``): the chat models of
``/api/chat/completions`` (with ``tools`` and ``structured_output`` where the model can),
and the embedding models of ``/api/embeddings`` (with their ``dimensions``). A name that
serves both (``local`` by default) is one entry with both capabilities.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ServicesDep
from api.schemas import ModelCard, ModelList
from auth.deps import CurrentPrincipal

router = APIRouter(tags=["models"])


@router.get(
    "/models",
    response_model=ModelList,
    response_model_exclude_none=True,
    operation_id="models-list",
)
async def list_models(services: ServicesDep, principal: CurrentPrincipal) -> ModelList:
    """Models a client may name, the default chat model first, then the embedding models."""
    registry = services.registry
    cards: dict[str, ModelCard] = {}
    for name in registry.names():
        owner = registry.owner(name)
        able = ["chat"] if owner == "local" else ["chat", "tools", "structured_output"]
        cards[name] = ModelCard(
            id=name, created=services.started_at, owned_by=owner, capabilities=able
        )
    for name, spec in await services.embeddings.models(principal.org_id):
        card = cards.get(name) or ModelCard(
            id=name, created=services.started_at, owned_by=spec.provider
        )
        card.capabilities.append("embeddings")
        card.dimensions = spec.dimension
        cards[name] = card
    return ModelList(data=list(cards.values()))
