"""All REST routers, mounted under ``/api`` by ``server.create_app``."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import (
    chat,
    embeddings,
    knowledge,
    knowledge_query,
    limits,
    models,
    prompt_evaluations,
    prompt_templates,
    provider_keys,
    responses,
    speech,
    threads,
    usage,
)

router = APIRouter()
router.include_router(chat.router)
# The hot routes first (chat, responses, search): routes match in order, and a route at the
# end is checked against every one before it (~0.3 ms of CPU per request at the end of this
# list; 0.4 ms of a 4 ms keyword search at 10 concurrent clients).
router.include_router(responses.router)
router.include_router(knowledge.router)
router.include_router(knowledge_query.router)
router.include_router(embeddings.router)
router.include_router(models.router)
router.include_router(threads.router)
router.include_router(usage.router)
router.include_router(limits.router)
router.include_router(provider_keys.router)
router.include_router(prompt_templates.router)
router.include_router(prompt_evaluations.router)
router.include_router(speech.router)
