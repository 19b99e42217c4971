"""Everything the routes use, built once in the app's lifespan and closed at shutdown."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from langgraph.graph.state import CompiledStateGraph
from opentelemetry.trace import Tracer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from accounting.accountant import Accountant
from auth.failures import AuthFailureLimiter, auth_failure_limiter
from core.config import Settings
from core.vectorstore import ChromaClientProvider
from jobs.queue import JobQueue
from limits.enforcer import LimitEnforcer
from providers.keys import ProviderKeyStore
from providers.registry import ModelRegistry
from providers.relay import OpenAIRelay
from services.chat import ChatService
from services.embeddings import EmbeddingService
from services.job_table import job_table, register_jobs
from services.knowledge import KnowledgeService
from services.knowledge_query import KnowledgeQuery
from services.metering import MeteringGate
from services.prompt_evaluations import PromptEvaluations
from services.prompt_templates import PromptTemplates
from services.responses.service import ResponsesService
from services.responses.store import ResponseStore
from services.speech import SpeechService
from services.threads import ThreadStore
from services.turn_locks import TurnLocks
from services.voice import VoiceChat
from services.wiring import (
    open_gateway,
    open_jobs,
    open_knowledge,
    open_metering,
    open_models,
    open_speech,
    open_storage,
    open_voice,
    prepare_runtime,
)

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """The app's long-lived objects (``request.app.state.services``)."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    registry: ModelRegistry
    relay: OpenAIRelay
    chat_graph: CompiledStateGraph
    rag_graph: CompiledStateGraph
    threads: ThreadStore
    turn_locks: TurnLocks
    chat: ChatService
    chroma: ChromaClientProvider
    accountant: Accountant
    limits: LimitEnforcer
    provider_keys: ProviderKeyStore
    metering: MeteringGate
    jobs: JobQueue
    knowledge: KnowledgeService
    knowledge_query: KnowledgeQuery
    embeddings: EmbeddingService
    prompt_templates: PromptTemplates
    prompt_evaluations: PromptEvaluations
    speech: SpeechService
    responses: ResponsesService
    voice: VoiceChat
    auth_failures: AuthFailureLimiter
    started_at: int


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    registry: ModelRegistry,
    chat_graph: CompiledStateGraph,
    rag_graph: CompiledStateGraph,
    tracer: Tracer | None = None,
) -> AsyncIterator[Services]:
    """Migrate, connect, start the local model; tear everything down on exit."""
    await prepare_runtime(settings, migrate=settings.migrate_on_start)
    async with AsyncExitStack() as stack:
        storage = await open_storage(stack, settings)
        await open_models(stack, settings, registry)
        metering = await open_metering(stack, settings, storage, registry, tracer=tracer)
        jobs = open_jobs(settings)
        speech = await open_speech(stack, settings, storage, metering, jobs)
        knowledge = await open_knowledge(stack, settings, storage, metering, jobs)
        prompt_templates = PromptTemplates(storage.sessions)
        prompt_evaluations = PromptEvaluations(
            sessions=storage.sessions,
            templates=prompt_templates,
            gate=metering.gate,
            embeddings=knowledge.embeddings,
            jobs=jobs,
        )
        gateway = await open_gateway(
            stack,
            settings,
            storage,
            metering,
            knowledge,
            prompt_templates,
            chat_graph=chat_graph,
            rag_graph=rag_graph,
        )
        register_jobs(
            jobs,
            job_table(
                knowledge=knowledge.service, prompt_evaluations=prompt_evaluations, speech=speech
            ),
        )
        await jobs.start()
        stack.push_async_callback(jobs.aclose)
        if settings.job_queue == "in_process":
            # The in-process queue forgets its jobs; a real queue keeps them (and
            # `ai-helper-core worker --recover` re-queues what predates it, once).
            if recovered := await knowledge.service.recover():
                logger.info("re-queued %d documents accepted before the restart", recovered)
            if evaluations := await prompt_evaluations.recover():
                logger.info(
                    "re-queued %d prompt evaluations interrupted by the restart", evaluations
                )
            if transcriptions := await speech.transcription_jobs.recover():
                logger.info(
                    "re-queued %d transcriptions interrupted by the restart", transcriptions
                )
        if (warming := knowledge.service.warm_keyword_index()) is not None:
            stack.callback(warming.cancel)  # a start-up nicety: never outlives the services
        yield Services(
            settings=settings,
            auth_failures=auth_failure_limiter(settings, storage.redis),
            engine=storage.engine,
            sessions=storage.sessions,
            registry=registry,
            relay=gateway.relay,
            chat_graph=chat_graph,
            rag_graph=rag_graph,
            threads=gateway.threads,
            turn_locks=gateway.turn_locks,
            chat=gateway.chat,
            chroma=knowledge.chroma,
            accountant=metering.accountant,
            limits=metering.limits,
            provider_keys=metering.provider_keys,
            metering=metering.gate,
            jobs=jobs,
            knowledge=knowledge.service,
            knowledge_query=gateway.knowledge_query,
            embeddings=EmbeddingService(gate=metering.gate, registry=knowledge.embeddings),
            prompt_templates=prompt_templates,
            prompt_evaluations=prompt_evaluations,
            speech=speech,
            responses=ResponsesService(
                chat=gateway.chat,
                store=ResponseStore(storage.sessions),
                default_model=registry.default_model,
            ),
            voice=open_voice(metering, speech, gateway, chat_graph=chat_graph),
            started_at=int(time.time()),
        )
