"""Per-area factories: each builds one area's long-lived objects and registers its teardown.

The app (``services.container``), the CLI (``services.knowledge_admin``), a worker process and
the benchmarks compose these instead of copying the wiring, and build only the areas they
use: re-embedding needs storage, metering and knowledge, not the chat model or the
checkpointer. Each factory takes the caller's ``AsyncExitStack``, so whatever it opened is
closed, in reverse order, when the caller's stack unwinds.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from opentelemetry.trace import Tracer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from accounting.accountant import Accountant
from accounting.journal import UsageJournal
from accounting.pricing import PriceTable
from accounting.recorder import UsageRecorder
from core.config import Settings
from core.tokenizer import install_offline_encodings, preload_encodings
from core.tracing import RelayTracer, tracing_enabled
from core.vectorstore import ChromaClientProvider
from db.migrate import upgrade
from db.session import create_engine, create_sessionmaker
from graphs.checkpointer import open_checkpointer
from graphs.voice.graph import build_voice_graph
from jobs.in_process import InProcessJobQueue
from jobs.procrastinate_queue import Backoff, ProcrastinateJobQueue, WorkerOptions
from jobs.queue import JobQueue
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
from services.knowledge import KnowledgeService, Reranker
from services.knowledge_query import KnowledgeQuery
from services.metering import MeteringGate
from services.prompt_templates import PromptTemplates
from services.response_cache import ResponseCache
from services.semantic_cache import SemanticCache
from services.speech import SpeechService
from services.thread_chat import ThreadChat
from services.threads import ThreadStore
from services.turn_locks import MemoryTurnLocks, RedisTurnLocks, TurnLocks
from services.voice import VoiceChat, voice_speech


@dataclass(frozen=True, slots=True)
class Storage:
    """The service's database (``ahc_`` tables) and, when opened, Redis."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Any | None
    """``redis.asyncio.Redis`` when ``AHC_REDIS_URL`` is set (limits, cache, locks)."""


@dataclass(frozen=True, slots=True)
class Metering:
    """Accounting, limits and org keys, and the gate every model call goes through."""

    recorder: UsageRecorder
    accountant: Accountant
    limits: LimitEnforcer
    provider_keys: ProviderKeyStore
    gate: MeteringGate


@dataclass(frozen=True, slots=True)
class Knowledge:
    """The knowledge base: Chroma, the embedders and the service over them."""

    chroma: ChromaClientProvider
    vectors: VectorStore
    embeddings: EmbeddingRegistry
    service: KnowledgeService


@dataclass(frozen=True, slots=True)
class Gateway:
    """The chat surface: relay, threads, caches, and the RAG question flow."""

    relay: OpenAIRelay
    threads: ThreadStore
    turn_locks: TurnLocks
    """One turn at a time per thread: chat, knowledge queries and the LangServe graphs."""
    chat: ChatService
    knowledge_query: KnowledgeQuery
    thread_chat: ThreadChat
    """Turns of threads (the chat service's memory path; the websocket's voice turns)."""


async def prepare_runtime(settings: Settings, *, migrate: bool) -> None:
    """Offline tokenizer files (loaded now, off the event loop) and, if asked, migrations.

    The first BPE load takes ~0.35 s: done here, it never blocks the first request.
    """
    await asyncio.to_thread(install_offline_encodings, settings.data_dir / "tiktoken")
    await asyncio.to_thread(preload_encodings)  # o200k and cl100k (`local` counts with it)
    if migrate:
        await asyncio.to_thread(upgrade, settings)


def open_jobs(settings: Settings, *, worker: WorkerOptions | bool | None = None) -> JobQueue:
    """The job queue the settings choose (not started: register the job table first).

    ``worker``: with procrastinate, how this process works jobs; ``None`` follows
    ``job_run_in_api`` (the API process), ``False`` only enqueues. The in-process queue
    always runs its jobs here. The caller starts it and closes it (``aclose``).
    """
    if settings.job_queue == "in_process":
        return InProcessJobQueue(workers=settings.knowledge_workers)
    if worker is None:
        worker = settings.job_run_in_api
    options: WorkerOptions | None
    if worker is True:
        options = WorkerOptions(
            concurrency=settings.knowledge_workers,
            stalled_seconds=settings.job_stalled_seconds,
            shutdown_seconds=settings.job_shutdown_seconds,
        )
    else:
        options = worker or None
    return ProcrastinateJobQueue(
        database_url=settings.resolved_database_url,
        schema=settings.job_schema,
        retry=Backoff(
            max_attempts=settings.job_max_attempts,
            first=settings.job_retry_backoff_seconds,
            cap=settings.job_retry_backoff_max_seconds,
        ),
        worker=options,
    )


async def open_storage(stack: AsyncExitStack, settings: Settings) -> Storage:
    """The SQLAlchemy engine and sessions, and Redis when configured."""
    engine = await asyncio.to_thread(create_engine, settings)  # it may create the data dir
    stack.push_async_callback(engine.dispose)
    redis = None
    if settings.redis_url:
        from redis.asyncio import Redis

        redis = Redis.from_url(settings.redis_url)
        stack.push_async_callback(redis.aclose)
    return Storage(engine=engine, sessions=create_sessionmaker(engine), redis=redis)


async def open_metering(
    stack: AsyncExitStack,
    settings: Settings,
    storage: Storage,
    registry: ModelRegistry,
    *,
    hold_limits: bool | None = None,
    tracer: Tracer | None = None,
) -> Metering:
    """The usage recorder (started), prices, limits, org keys and the metering gate.

    ``hold_limits``: whether calls are held against limits (default: when accounting is
    on); an operator's tool accounts its calls without holding them.
    """
    recorder = UsageRecorder(
        storage.sessions,
        spool_path=settings.data_dir / "usage-spool.jsonl",
        batch_size=settings.usage_batch_size,
        flush_interval=settings.usage_flush_interval_seconds,
        max_buffer=settings.usage_max_buffer,
        journal=UsageJournal(settings.data_dir / "usage-journal"),
    )
    await recorder.start()
    stack.push_async_callback(recorder.aclose)
    prices = PriceTable(settings.prices)
    accountant = Accountant(
        recorder, prices, registry.owner, enabled=settings.accounting_enabled, tracer=tracer
    )
    counters: Counters = (
        RedisCounters(storage.redis, settings.redis_prefix)
        if storage.redis is not None
        else MemoryCounters()
    )
    limits = LimitEnforcer(
        LimitStore(storage.sessions, ttl=settings.org_cache_seconds),
        counters,
        prices,
        settings.limits_default_max_tokens,
        enabled=settings.accounting_enabled if hold_limits is None else hold_limits,
    )
    vault = await asyncio.to_thread(load_vault, settings)  # reads or creates the key file
    provider_keys = ProviderKeyStore(storage.sessions, vault, ttl=settings.org_cache_seconds)
    gate = MeteringGate(
        registry=registry, provider_keys=provider_keys, limits=limits, accountant=accountant
    )
    return Metering(
        recorder=recorder,
        accountant=accountant,
        limits=limits,
        provider_keys=provider_keys,
        gate=gate,
    )


async def open_knowledge(
    stack: AsyncExitStack,
    settings: Settings,
    storage: Storage,
    metering: Metering,
    jobs: JobQueue,
) -> Knowledge:
    """Chroma (opened lazily on first use), the embedders and the knowledge service."""
    chroma = ChromaClientProvider(settings)
    vectors = VectorStore(chroma)
    embeddings = EmbeddingRegistry(settings)
    stack.push_async_callback(embeddings.aclose)
    reranker = Reranker(settings=settings, gate=metering.gate)
    stack.push_async_callback(reranker.aclose)
    service = KnowledgeService(
        settings=settings,
        sessions=storage.sessions,
        vectors=vectors,
        embeddings=embeddings,
        accountant=metering.accountant,
        jobs=jobs,
        provider_keys=metering.provider_keys,
        limits=metering.limits,
        reranker=reranker,
    )
    return Knowledge(chroma=chroma, vectors=vectors, embeddings=embeddings, service=service)


async def open_speech(
    stack: AsyncExitStack, settings: Settings, storage: Storage, metering: Metering, jobs: JobQueue
) -> SpeechService:
    """Transcription and synthesis (the local Whisper model loads on first use)."""
    speech = SpeechService.build(settings, gate=metering.gate, sessions=storage.sessions, jobs=jobs)
    stack.push_async_callback(speech.aclose)
    return speech


async def open_models(stack: AsyncExitStack, settings: Settings, registry: ModelRegistry) -> None:
    """The embedded local model when it serves ``local``, and the chat models' pool."""
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


async def open_gateway(
    stack: AsyncExitStack,
    settings: Settings,
    storage: Storage,
    metering: Metering,
    knowledge: Knowledge,
    templates: PromptTemplates,
    *,
    chat_graph: CompiledStateGraph,
    rag_graph: CompiledStateGraph,
) -> Gateway:
    """The chat relay, thread memory (checkpointer attached to both graphs), caches and RAG."""
    checkpointer = await stack.enter_async_context(open_checkpointer(settings))
    chat_graph.checkpointer = checkpointer  # the graphs were compiled before resources existed
    rag_graph.checkpointer = checkpointer  # one saver; RAG turns are keyed "rag:<org>/<id>"
    relay = OpenAIRelay(settings)
    stack.push_async_callback(relay.aclose)
    turn_locks = open_turn_locks(settings, storage)
    threads = ThreadStore(storage.sessions, checkpointer, locks=turn_locks)
    semantic_cache = None
    if settings.semantic_cache_enabled:
        spec = knowledge.embeddings.spec(settings.semantic_cache_embedding_model)
        semantic_cache = SemanticCache(
            knowledge.vectors,
            knowledge.embeddings.embeddings(spec.name),
            spec=spec,
            accountant=metering.accountant,
            threshold=settings.semantic_cache_threshold,
            ttl=settings.cache_ttl_seconds,
        )
    thread_chat = ThreadChat(
        graph=chat_graph, threads=threads, gate=metering.gate, locks=turn_locks
    )
    chat = ChatService(
        gate=metering.gate,
        relay=relay,
        threads=thread_chat,
        tracer=RelayTracer(tracing_enabled()),
        semantic_cache=semantic_cache,
        templates=templates,
        cache=ResponseCache(
            storage.sessions,
            ttl=settings.cache_ttl_seconds,
            redis=storage.redis,
            redis_prefix=settings.redis_prefix,
        ),
    )
    knowledge_query = KnowledgeQuery(
        graph=rag_graph,
        gate=metering.gate,
        threads=threads,
        locks=turn_locks,
        templates=templates,
    )
    return Gateway(
        relay=relay,
        threads=threads,
        turn_locks=turn_locks,
        chat=chat,
        knowledge_query=knowledge_query,
        thread_chat=thread_chat,
    )


def open_voice(
    metering: Metering, speech: SpeechService, gateway: Gateway, *, chat_graph: CompiledStateGraph
) -> VoiceChat:
    """Spoken turns of chat threads (the websocket's chat mode): the voice graph, wired."""
    graph = build_voice_graph(chat=chat_graph, speech=voice_speech(lambda: speech))
    return VoiceChat(graph=graph, threads=gateway.thread_chat, gate=metering.gate)


def open_turn_locks(settings: Settings, storage: Storage) -> TurnLocks:
    """Thread turn locks in Redis (shared by instances) when configured, else in-process."""
    if storage.redis is not None:
        return RedisTurnLocks(
            storage.redis,
            settings.redis_prefix,
            wait_seconds=settings.thread_lock_wait_seconds,
            lease_seconds=settings.thread_lock_lease_seconds,
        )
    return MemoryTurnLocks(wait_seconds=settings.thread_lock_wait_seconds)
