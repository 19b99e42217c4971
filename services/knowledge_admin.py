"""Knowledge-base maintenance outside the server: ``ai-helper-core knowledge reembed``.

Builds just what re-embedding needs (database, Chroma, embedders, usage recorder) and runs
the same rebuild the ``POST /api/knowledge/reembed`` job runs, in the foreground. An
operator's tool: its embedding calls are accounted (usage events) but not held against the
org's limits.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from auth.tokens import Principal
from core.config import Settings
from jobs.in_process import InProcessJobQueue
from providers.registry import ModelRegistry
from services.wiring import open_knowledge, open_metering, open_storage, prepare_runtime


async def reembed_collection(
    settings: Settings, *, org_id: str, collection: str, model: str | None
) -> tuple[str, int]:
    """Re-embed ``collection`` of ``org_id`` now; the model it ends with and its dimension."""
    await prepare_runtime(settings, migrate=False)
    async with AsyncExitStack() as stack:
        storage = await open_storage(stack, settings)
        metering = await open_metering(
            stack, settings, storage, ModelRegistry(settings), hold_limits=False
        )
        knowledge = await open_knowledge(
            stack, settings, storage, metering, InProcessJobQueue(workers=1)
        )
        service = knowledge.service
        admin = Principal(org_id=org_id, user_id="cli", role="admin")
        started = await service.reembed(admin, collection, model, request_id=None, queue=False)
        await service.run_reembed(started.id, "cli")
        final = next(c for c in await service.collections(admin) if c.name == collection)
        return final.embedding_model, final.embedding_dim
