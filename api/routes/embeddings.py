"""Embeddings, OpenAI-compatible: ``POST /api/embeddings``."""

from __future__ import annotations

import base64

import numpy as np
import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import ServicesDep
from api.schemas import EmbeddingsCreate
from auth.deps import CurrentPrincipal
from services.embeddings import EmbeddingResult

router = APIRouter(tags=["embeddings"])

_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Bad input (empty, too many, too long, unknown model, dimensions)"},
    401: {"description": "Missing or invalid token"},
    429: {"description": "Over a limit, or upstream rate limit"},
    502: {"description": "Upstream failure"},
}


@router.post("/embeddings", operation_id="embeddings-create", responses=_ERRORS)
async def create_embeddings(
    body: EmbeddingsCreate, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """OpenAI Embeddings: one vector per input, as floats or base64 float32."""
    result = await services.embeddings.embed(principal, body.to_request())
    return Response(
        orjson.dumps(_answer(result, base64_vectors=body.encoding_format == "base64")),
        media_type="application/json",
    )


def _answer(result: EmbeddingResult, *, base64_vectors: bool) -> dict[str, object]:
    """OpenAI's ``list`` of ``embedding`` objects, with the usage."""
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": _b64(vector) if base64_vectors else vector,
        }
        for index, vector in enumerate(result.vectors)
    ]
    tokens = result.prompt_tokens
    return {
        "object": "list",
        "data": data,
        "model": result.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _b64(vector: list[float]) -> str:
    """Little-endian float32, base64 (what the openai SDK decodes by default)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
