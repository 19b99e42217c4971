"""Knowledge-base maintenance outside the server: ``ai-helper-core knowledge reembed``.

Builds just what re-embedding needs (database, Chroma, embedders, usage recorder) and runs
the same rebuild the ``POST /api/knowledge/reembed`` job runs, in the foreground. An
operator's tool: its embedding calls are accounted (usage events) but not held against the
org's limits.
"""

from __future__ import annotations

from accounting.accountant import Accountant
from accounting.pricing import PriceTable
from accounting.recorder import UsageRecorder
from auth.tokens import Principal
from core.config import Settings
from core.tokenizer import install_offline_encodings
from core.vectorstore import ChromaClientProvider
from db.session import create_engine, create_sessionmaker
from jobs.in_process import InProcessJobQueue
from knowledge.vectors import VectorStore
from limits.counters import MemoryCounters
from limits.enforcer import LimitEnforcer
from limits.store import LimitStore
from providers.embeddings import EmbeddingRegistry
from providers.keys import ProviderKeyStore, load_vault
from services.knowledge import KnowledgeService


async def reembed_collection(
    settings: Settings, *, org_id: str, collection: str, model: str | None
) -> tuple[str, int]:
    """Re-embed ``collection`` of ``org_id`` now; the model it ends with and its dimension."""
    install_offline_encodings(settings.data_dir / "tiktoken")
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    recorder = UsageRecorder(sessions, spool_path=settings.data_dir / "usage-spool.jsonl")
    await recorder.start()
    try:
        embeddings = EmbeddingRegistry(settings)
        accountant = Accountant(
            recorder, PriceTable(settings.prices), lambda _: "local", enabled=True
        )
        service = KnowledgeService(
            settings=settings,
            sessions=sessions,
            vectors=VectorStore(ChromaClientProvider(settings)),
            embeddings=embeddings,
            accountant=accountant,
            jobs=InProcessJobQueue(workers=1),
            provider_keys=ProviderKeyStore(sessions, load_vault(settings)),
            limits=LimitEnforcer(
                LimitStore(sessions),
                MemoryCounters(),
                accountant.prices,
                settings.limits_default_max_tokens,
                enabled=False,
            ),
        )
        admin = Principal(org_id=org_id, user_id="cli", role="admin")
        started = await service.reembed(admin, collection, model, request_id=None, queue=False)
        await service.run_reembed(started.id, "cli")
        final = next(c for c in await service.collections(admin) if c.name == collection)
        return final.embedding_model, final.embedding_dim
    finally:
        await recorder.aclose()
        await engine.dispose()
