"""Everything the routes use, built once in the app's lifespan and closed at shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from langgraph.graph.state import CompiledStateGraph
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from accounting.accountant import Accountant
from accounting.pricing import PriceTable
from accounting.recorder import UsageRecorder
from core.config import Settings
from core.tokenizer import install_offline_encodings
from core.tracing import RelayTracer, tracing_enabled
from core.vectorstore import ChromaClientProvider
from db.migrate import upgrade
from db.session import create_engine, create_sessionmaker
from graphs.checkpointer import open_checkpointer
from jobs.in_process import InProcessJobQueue
from knowledge.vectors import VectorStore
from limits.counters import Counters, MemoryCounters, RedisCounters
from limits.enforcer import LimitEnforcer
from limits.store import LimitStore
from providers.embeddings import EmbeddingRegistry
from providers.keys import ProviderKeyStore, load_vault
from providers.local_llm import start_local_model
from providers.registry import ModelRegistry
from providers.relay import OpenAIRelay
from services.chat import ChatService
from services.job_table import job_handlers, register_jobs
from services.knowledge import KnowledgeService
from services.knowledge_query import KnowledgeQuery
from services.metering import MeteringGate
from services.prompt_evaluations import PromptEvaluations
from services.prompt_templates import PromptTemplates
from services.response_cache import ResponseCache
from services.semantic_cache import SemanticCache
from services.speech import SpeechService
from services.thread_chat import ThreadChat
from services.threads import ThreadStore

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
    chat: ChatService
    chroma: ChromaClientProvider
    accountant: Accountant
    limits: LimitEnforcer
    provider_keys: ProviderKeyStore
    metering: MeteringGate
    jobs: InProcessJobQueue
    knowledge: KnowledgeService
    knowledge_query: KnowledgeQuery
    prompt_templates: PromptTemplates
    prompt_evaluations: PromptEvaluations
    speech: SpeechService
    started_at: int


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    registry: ModelRegistry,
    chat_graph: CompiledStateGraph,
    rag_graph: CompiledStateGraph,
) -> AsyncIterator[Services]:
    """Migrate, connect, start the local model; tear everything down on exit."""
    install_offline_encodings(settings.data_dir / "tiktoken")
    if settings.migrate_on_start:
        await asyncio.to_thread(upgrade, settings)
    async with AsyncExitStack() as stack:
        engine = create_engine(settings)
        stack.push_async_callback(engine.dispose)
        sessions = create_sessionmaker(engine)
        checkpointer = await stack.enter_async_context(open_checkpointer(settings))
        chat_graph.checkpointer = checkpointer  # the graph was compiled before resources existed
        rag_graph.checkpointer = checkpointer  # one saver; RAG turns are keyed "rag:<org>/<id>"
        if registry.local_enabled and not settings.local_model_base_url:
            local = await asyncio.to_thread(
                start_local_model,
                model_path=settings.local_model_path,
                context=settings.local_model_context,
                threads=settings.local_model_threads,
                port=settings.local_model_port,
                alias=settings.local_model_name,
            )
            stack.callback(local.stop)
            registry.attach_local(base_url=local.base_url, api_key=local.api_key)
        registry.open()
        stack.push_async_callback(registry.aclose)
        relay = OpenAIRelay(settings)
        stack.push_async_callback(relay.aclose)
        threads = ThreadStore(sessions, checkpointer)
        recorder = UsageRecorder(
            sessions,
            spool_path=settings.data_dir / "usage-spool.jsonl",
            batch_size=settings.usage_batch_size,
            flush_interval=settings.usage_flush_interval_seconds,
            max_buffer=settings.usage_max_buffer,
        )
        await recorder.start()
        stack.push_async_callback(recorder.aclose)
        provider_keys = ProviderKeyStore(
            sessions, load_vault(settings), ttl=settings.org_cache_seconds
        )
        prices = PriceTable(settings.prices)
        accountant = Accountant(
            recorder, prices, registry.owner, enabled=settings.accounting_enabled
        )
        redis = None
        if settings.redis_url:
            from redis.asyncio import Redis

            redis = Redis.from_url(settings.redis_url)
            stack.push_async_callback(redis.aclose)
        counters: Counters = (
            RedisCounters(redis, settings.redis_prefix) if redis is not None else MemoryCounters()
        )
        limits = LimitEnforcer(
            LimitStore(sessions, ttl=settings.org_cache_seconds),
            counters,
            prices,
            settings.limits_default_max_tokens,
            enabled=settings.accounting_enabled,
        )
        metering = MeteringGate(
            registry=registry, provider_keys=provider_keys, limits=limits, accountant=accountant
        )
        chroma = ChromaClientProvider(settings)
        vectors = VectorStore(chroma)
        embeddings = EmbeddingRegistry(settings)
        stack.push_async_callback(embeddings.aclose)
        jobs = InProcessJobQueue(workers=settings.knowledge_workers)
        knowledge = KnowledgeService(
            settings=settings,
            sessions=sessions,
            vectors=vectors,
            embeddings=embeddings,
            accountant=accountant,
            jobs=jobs,
            provider_keys=provider_keys,
            limits=limits,
        )
        prompt_templates = PromptTemplates(sessions)
        prompt_evaluations = PromptEvaluations(
            sessions=sessions,
            templates=prompt_templates,
            gate=metering,
            embeddings=embeddings,
            jobs=jobs,
        )
        speech = SpeechService.build(settings, gate=metering)
        stack.push_async_callback(speech.aclose)
        semantic_cache = None
        if settings.semantic_cache_enabled:
            semantic_spec = embeddings.spec(settings.semantic_cache_embedding_model)
            semantic_cache = SemanticCache(
                vectors,
                embeddings.embeddings(semantic_spec.name),
                spec=semantic_spec,
                accountant=accountant,
                threshold=settings.semantic_cache_threshold,
                ttl=settings.cache_ttl_seconds,
            )
        register_jobs(
            jobs, job_handlers(knowledge=knowledge, prompt_evaluations=prompt_evaluations)
        )
        await jobs.start()
        stack.push_async_callback(jobs.aclose)
        recovered = await knowledge.recover()
        if recovered:
            logger.info("re-queued %d documents accepted before the restart", recovered)
        if evaluations := await prompt_evaluations.recover():
            logger.info("re-queued %d prompt evaluations interrupted by the restart", evaluations)
        yield Services(
            settings=settings,
            engine=engine,
            sessions=sessions,
            registry=registry,
            relay=relay,
            chat_graph=chat_graph,
            rag_graph=rag_graph,
            threads=threads,
            chat=ChatService(
                gate=metering,
                relay=relay,
                threads=ThreadChat(graph=chat_graph, threads=threads, gate=metering),
                tracer=RelayTracer(tracing_enabled()),
                semantic_cache=semantic_cache,
                templates=prompt_templates,
                cache=ResponseCache(
                    sessions,
                    ttl=settings.cache_ttl_seconds,
                    redis=redis,
                    redis_prefix=settings.redis_prefix,
                ),
            ),
            chroma=chroma,
            accountant=accountant,
            limits=limits,
            provider_keys=provider_keys,
            metering=metering,
            jobs=jobs,
            knowledge=knowledge,
            knowledge_query=KnowledgeQuery(
                graph=rag_graph,
                gate=metering,
                threads=threads,
                templates=prompt_templates,
            ),
            prompt_templates=prompt_templates,
            prompt_evaluations=prompt_evaluations,
            speech=speech,
            started_at=int(time.time()),
        )
