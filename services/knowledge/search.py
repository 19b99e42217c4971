"""Hybrid search over an org's collection: the vector leg, the keyword leg, the gate, hydrate.

The legs run concurrently (the vector leg's questions to Chroma, swap-aware, are
``services.knowledge.vector_leg``); ranking, fusion and the relevance verdict are the pure
functions of ``knowledge.search``. A search of its own (not RAG's retrieval, which its
query holds) reserves its query's embedding against the org's limits like a chat prompt.
An optional rerank stage (``services.knowledge.rerank``) reorders the best candidates last.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounting.accountant import Accountant
from accounting.embeddings import estimate_tokens
from accounting.events import CallContext
from auth.tokens import Principal
from core.config import Settings
from core.cpu_turns import CpuTurns
from core.errors import ApiError
from db.driver_sql import DriverReads
from db.models import KnowledgeCollection
from knowledge import keyword_index
from knowledge.chunk_texts import ChunkText, ready_chunks
from knowledge.collections import DEFAULT_COLLECTION
from knowledge.filters import InvalidFilter, validate_filter
from knowledge.identifiers import identifiers, rare_identifier_found
from knowledge.keyword_index import KeywordHits
from knowledge.metadata import chunk_metadata
from knowledge.search import (
    Fusion,
    SearchHit,
    SearchQuery,
    found_relevant,
    keyword_unit,
    rank,
    to_hits,
)
from knowledge.vectors import VectorHit, VectorStore
from limits.enforcer import LimitEnforcer
from services.knowledge.collections import Collections
from services.knowledge.embedders import KnowledgeEmbedders
from services.knowledge.rerank import Judge, Reranker, RerankOutcome
from services.knowledge.vector_leg import VectorLeg


@dataclass(frozen=True, slots=True)
class Found:
    """A search's hits, best first, and what its rerank stage did (None: not asked)."""

    hits: list[SearchHit]
    rerank: RerankOutcome | None = None


class Search:
    """Finds the chunks of an org's collection that answer a query."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        vectors: VectorStore,
        accountant: Accountant,
        limits: LimitEnforcer,
        collections: Collections,
        embedders: KnowledgeEmbedders,
        reranker: Reranker | None = None,
    ) -> None:
        self._settings = settings
        self._reranker = reranker
        self._sessions = sessions
        self._accountant = accountant
        self._limits = limits
        self._collections = collections
        self._vector = VectorLeg(vectors=vectors, collections=collections, embedders=embedders)
        self._turns = CpuTurns(settings.knowledge_search_turns)
        keyword_index.configure(
            cache_postings=settings.knowledge_keyword_cache_postings,
            warm_postings=settings.knowledge_keyword_warm_postings,
        )

    def warm_keyword_index(self) -> asyncio.Task[int] | None:
        """At start-up: the largest collections' common postings into memory, in the background."""
        return keyword_index.warm_largest_soon(self._sessions)

    async def search(self, context: CallContext, query: SearchQuery) -> list[SearchHit]:
        """The hits of ``query`` (404 for an unknown collection; none before any upload)."""
        return (await self.find(context, query)).hits

    async def find(self, context: CallContext, query: SearchQuery) -> Found:
        """:meth:`search`, with what the rerank stage did (400 when it has no provider)."""
        judge = await self._judge(context.org_id, query.rerank)
        where = None
        if query.filter is not None:
            try:
                where = validate_filter(query.filter)
            except InvalidFilter as exc:
                raise ApiError(422, "invalid_filter", str(exc)) from exc
        cached = await self._collections.for_search(context.org_id, query.collection)
        if cached is None:
            if query.collection == DEFAULT_COLLECTION:
                return Found([])  # nothing uploaded yet
            raise ApiError(
                404, "collection_not_found", f"no knowledge collection {query.collection!r}"
            )
        held = None
        if context.reservation is None and query.mode != "keyword":

            def size() -> tuple[int, Decimal]:
                tokens = estimate_tokens([query.query])
                return tokens, self._accountant.prices.cost(cached.embedding_model, tokens, 0)

            context = await self._limits.hold_tokens(
                Principal(org_id=context.org_id, user_id=context.user_id), context, size
            )
            held = context.reservation
        try:
            if judge is None:
                return Found(await self._search(context, query, cached, where))
            assert self._reranker is not None
            candidates = replace(query, k=self._reranker.candidates(query.k))
            hits = await self._search(context, candidates, cached, where)
        finally:
            if held is not None:
                held.release()  # a no-op once the embedding's usage settled it
        hits, outcome = await self._reranker.rerank(context, query.query, hits, judge, query.k)
        return Found(hits, outcome)

    async def _judge(self, org_id: str, requested: bool | str | None) -> Judge | None:
        """The rerank stage's judge (None: off), or the 400 of one asked for without provider."""
        if self._reranker is None:
            if requested:
                raise ApiError(400, "rerank_unavailable", "reranking is not available here")
            return None
        return await self._reranker.judge_for(org_id, requested)

    async def _search(
        self,
        context: CallContext,
        query: SearchQuery,
        collection: KnowledgeCollection,
        where: dict[str, Any] | None,
    ) -> list[SearchHit]:
        # The query's embedding (a provider call, or the local model) is awaited before the
        # search takes its turn: the turns order the CPU-bound rest (core.cpu_turns).
        vector = None
        if query.mode != "keyword":
            vector = await self._vector.embed(context, collection, query)
        async with self._turns.turn():
            if vector is not None and query.mode == "vector":  # Chroma has texts: no SQL
                collection, vector_hits = await self._vector.hits(
                    context, collection, query, vector, where
                )
                return await self._ranked(None, query, collection, vector_hits, KeywordHits([]), {})
            return await self._keyword_search(context, query, collection, where, vector)

    async def _keyword_search(
        self,
        context: CallContext,
        query: SearchQuery,
        collection: KnowledgeCollection,
        where: dict[str, Any] | None,
        vector: list[float] | None = None,
    ) -> list[SearchHit]:
        """Keyword (no ``vector``) or hybrid: one connection for the keyword leg and texts."""
        async with self._sessions() as session:
            reads = await DriverReads.on(await session.connection())
            return await self._with_keywords(reads, context, query, collection, where, vector)

    async def _with_keywords(
        self,
        reads: DriverReads,
        context: CallContext,
        query: SearchQuery,
        collection: KnowledgeCollection,
        where: dict[str, Any] | None,
        vector: list[float] | None,
    ) -> list[SearchHit]:
        # ``collection`` becomes the record the vector leg used (after a re-embedding swap).
        vector_hits: list[VectorHit] = []
        texts: dict[str, ChunkText] = {}  # chunk texts already read from the registry
        if vector is None:
            keyword = await self._keyword_leg(reads, context.org_id, collection, query, where)
        elif query.mmr:
            (collection, vector_hits), keyword = await asyncio.gather(
                self._vector.hits(context, collection, query, vector, where),
                self._keyword_leg(reads, context.org_id, collection, query, where),
            )
        else:
            # Hybrid reads 3x its share of vector hits (SearchQuery.vector_fetch): their ids
            # from Chroma, then both legs' texts from the registry in one read (Chroma's own
            # read of 60 texts costs ~6.5 ms of CPU at 100k chunks), and only chunks of ready
            # documents, as the keyword leg always had.
            (collection, nearest), keyword = await asyncio.gather(
                self._vector.nearest(context, collection, query, vector, where),
                self._keyword_leg(reads, context.org_id, collection, query, where),
            )
            wanted = dict.fromkeys([*(cid for cid, _ in nearest), *(c for c, _ in keyword.hits)])
            texts = await ready_chunks(reads, list(wanted))
            vector_hits = [
                VectorHit(chunk_id=cid, text=texts[cid].text, metadata={}, score=score)
                for cid, score in nearest
                if cid in texts
            ]
        return await self._ranked(reads, query, collection, vector_hits, keyword, texts)

    async def _ranked(
        self,
        reads: DriverReads | None,
        query: SearchQuery,
        collection: KnowledgeCollection,
        vector_hits: list[VectorHit],
        keyword: KeywordHits,
        texts: dict[str, ChunkText],
    ) -> list[SearchHit]:
        """Fuse the legs and build the hits; metadata is built only for the hits returned."""
        relevant = await self._relevant(reads, collection, query, vector_hits, keyword, texts)
        fusion = Fusion(
            keyword_weight=self._settings.knowledge_keyword_weight,
            language_penalty=self._settings.knowledge_language_penalty.get(
                collection.embedding_model, 0.0
            ),
        )
        ranked = rank(query, vector_hits, keyword.hits, fusion)
        from_chroma = {hit.chunk_id for hit in vector_hits if hit.metadata}
        missing = [cid for cid, _ in ranked if cid not in from_chroma and cid not in texts]
        if missing and reads is not None:
            texts = texts | await ready_chunks(reads, missing)
        shown = {
            cid: _as_hit(texts[cid], collection)
            for cid, _ in ranked
            if cid not in from_chroma and cid in texts
        }
        return to_hits(ranked, vector_hits, keyword.hits, shown, relevant=relevant)

    async def _relevant(
        self,
        reads: DriverReads | None,
        collection: KnowledgeCollection,
        query: SearchQuery,
        vector_hits: list[VectorHit],
        keyword: KeywordHits,
        texts: dict[str, ChunkText],
    ) -> bool:
        """:func:`found_relevant` with the bars of the collection's model and the mode."""
        settings = self._settings
        best_similarity = max((hit.score for hit in vector_hits), default=None)
        min_similarity = (
            query.min_similarity
            if query.min_similarity is not None
            else settings.rag_min_similarity.get(collection.embedding_model)
        )
        if found_relevant(
            best_similarity, None, min_similarity=min_similarity, min_keyword=None, unit=0.0
        ):
            return True
        best_keyword = max((score for _, score in keyword.hits), default=None)
        if best_keyword is None or best_keyword <= 0:
            return False
        min_keyword = (
            settings.rag_min_keyword_score_keyword_mode
            if query.mode == "keyword"
            else settings.rag_min_keyword_score_by_model.get(
                collection.embedding_model, settings.rag_min_keyword_score
            )
        )
        if found_relevant(
            best_similarity,
            best_keyword,
            min_similarity=min_similarity,
            min_keyword=min_keyword,
            unit=keyword_unit(keyword.chunks),
        ):
            return True
        if not identifiers(query.query):
            return False
        # A code or a name BM25 found in few chunks (see knowledge.identifiers): read the
        # keyword hits' texts, only for the searches that get this far.
        found = {cid: chunk.text for cid, chunk in texts.items()}
        found.update((hit.chunk_id, hit.text) for hit in vector_hits)
        missing = [cid for cid, _ in keyword.hits if cid not in found]
        if missing and reads is not None:
            found.update((cid, c.text) for cid, c in (await ready_chunks(reads, missing)).items())
        return rare_identifier_found(
            query.query, [found[cid] for cid, _ in keyword.hits if cid in found]
        )

    async def _keyword_leg(
        self,
        reads: DriverReads,
        org_id: str,
        collection: KnowledgeCollection,
        query: SearchQuery,
        where: dict[str, Any] | None,
    ) -> KeywordHits:
        """BM25 hits from SQL, limited to the chunks matching ``where`` (asked of Chroma)."""
        allowed = None
        if where is not None:
            allowed = await self._vector.ids_matching(org_id, collection, query.collection, where)
        hits = await keyword_index.search(
            reads, collection.id, query.query, limit=query.fetch, allowed=allowed
        )
        keyword_index.warm_soon(self._sessions, collection.id)
        return hits


def _as_hit(chunk: ChunkText, collection: KnowledgeCollection) -> VectorHit:
    """A registry chunk as the hit a vector search would have returned (same metadata)."""
    meta = chunk_metadata(
        chunk.document,
        collection,
        chunk_id=chunk.id,
        index=chunk.chunk_index,
        page=chunk.page,
        section=chunk.section,
    )
    return VectorHit(chunk_id=chunk.id, text=chunk.text, metadata=meta, score=0)
