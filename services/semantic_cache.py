"""Semantic response cache (off by default): a rephrased repeat is answered from the cache.

After an exact-cache miss, the question (the last user message, normalized) is embedded and
looked up among earlier questions of the same *context*: same org, model, parameters and
every other message, hashed into ``context_key``. A neighbour at or above
``AHC_SEMANTIC_CACHE_THRESHOLD`` (cosine) answers with the completion stored for it in the
exact cache. Vectors live in one Chroma collection (shared by every instance when Chroma is a
server), filtered by ``context_key`` and expiry, so entries never cross organizations.

It trades a query embedding (~10-50 ms with the local engine) on every cacheable miss for
skipping the model on near-duplicates; a wrong hit returns another question's answer, which
is why it is opt-in and its threshold is high.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import unicodedata
from typing import Any

import orjson
from langchain_core.embeddings import Embeddings

from accounting.accountant import Accountant
from accounting.embeddings import AccountedEmbeddings
from accounting.events import CallContext
from knowledge.vectors import VectorStore
from providers.embeddings import EmbeddingSpec

logger = logging.getLogger(__name__)

COLLECTION_PREFIX = "ahc-semantic-cache-"
_IGNORED = frozenset({"stream", "stream_options", "user", "metadata", "cache"})
_PUNCTUATION = re.compile(r"[^\w\s]+")


def normalize_question(text: str) -> str:
    """Case, width and punctuation do not change a question."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCTUATION.sub(" ", folded).split())


def split_question(body: dict[str, Any]) -> tuple[str, list[Any]] | None:
    """The last user message's text and the other messages, or None (no text question)."""
    messages = body.get("messages") or []
    if not messages or not isinstance(messages[-1], dict) or messages[-1].get("role") != "user":
        return None
    content = messages[-1].get("content")
    if not isinstance(content, str) or not content.strip():
        return None
    return content, messages[:-1]


def context_key(org_id: str, model: str, body: dict[str, Any], earlier: list[Any]) -> str:
    """Everything but the question: org, model, parameters and the earlier messages."""
    material = {k: v for k, v in body.items() if k not in _IGNORED and k != "messages"}
    material.update(org=org_id, model=model, messages=earlier)
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


class SemanticCache:
    """Finds the exact-cache key of an earlier, similar question of the same context."""

    def __init__(
        self,
        vectors: VectorStore,
        embedder: Embeddings,
        *,
        spec: EmbeddingSpec,
        accountant: Accountant,
        threshold: float,
        ttl: float,
    ) -> None:
        self._vectors = vectors
        self._embedder = embedder
        self._spec = spec
        self._accountant = accountant
        self._collection = COLLECTION_PREFIX + spec.name
        self._threshold = threshold
        self._ttl = ttl
        self._tasks: set[asyncio.Task[None]] = set()

    async def embed(self, question: str, context: CallContext) -> list[float] | None:
        """The vector of a normalized question (accounted to the request), or None."""
        embedder = AccountedEmbeddings(
            self._embedder, spec=self._spec, accountant=self._accountant, context=context
        )
        try:
            return await embedder.aembed_query(normalize_question(question))
        except Exception:
            logger.warning("semantic cache embedding failed", exc_info=True)
            return None

    async def lookup(self, context: str, vector: list[float]) -> str | None:
        """The exact-cache key of the closest earlier question, when close enough."""
        try:
            hits = await self._vectors.search(
                self._collection,
                "cosine",
                vector,
                k=1,
                where={"$and": [{"context_key": context}, {"expires_at": {"$gt": time.time()}}]},
            )
        except Exception:  # a cache that cannot answer is a miss, never an error
            logger.warning("semantic cache lookup failed", exc_info=True)
            return None
        if not hits or hits[0].score < self._threshold:
            return None
        key = hits[0].metadata.get("exact_key")
        return str(key) if key else None

    def remember(self, context: str, vector: list[float], question: str, exact_key: str) -> None:
        """Index a freshly cached answer's question (in the background)."""
        task = asyncio.get_running_loop().create_task(
            self._store(context, vector, question, exact_key)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store(self, context: str, vector: list[float], question: str, key: str) -> None:
        try:
            await self._vectors.add(
                self._collection,
                "cosine",
                ids=[key],
                texts=[question[:2000]],
                vectors=[vector],
                metadatas=[
                    {
                        "context_key": context,
                        "exact_key": key,
                        "expires_at": time.time() + self._ttl,
                    }
                ],
            )
        except Exception:
            logger.warning("semantic cache write failed", exc_info=True)
