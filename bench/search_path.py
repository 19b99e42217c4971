"""Where an authenticated search spends its CPU: each piece of the request path alone.

The app runs in this process (``create_app`` and its lifespan, a SQLite registry and the
embedded Chroma in a scratch directory; ``text-embedding-3-small`` served by the fake OpenAI
upstream in a process of its own), with a 200-chunk collection. Requests go through httpx's
ASGI transport (every middleware, routing, auth, validation and serialization, no sockets);
then each piece the search route calls is timed alone, by calling it directly. Rows give
this process's CPU ms per call (all threads) and wall ms per call, after a warm-up.

    .venv/bin/python bench/search_path.py [--calls 500] [--redis redis://127.0.0.1:6379/15]

``--redis`` puts the limit counters in Redis (the "with limits" row then shows its round
trip); without it they are the in-process ones. ``AHC_LEAN_QUERY_EMBEDDINGS=false`` in the
environment measures the search route with the SDK's query embedding.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import jwt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import SECRET, fake_server

MODEL = "text-embedding-3-small"
QUERY = "apples policy 42"


async def timed(calls: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """CPU and wall ms per call of ``call`` (after a warm-up of 30 calls)."""
    for _ in range(30):
        await call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await call()
    return (
        (time.process_time() - cpu) / calls * 1000,
        (time.perf_counter() - wall) / calls * 1000,
    )


async def measure(upstream: str, calls: int, redis: str | None) -> list[tuple[str, float, float]]:
    data = tempfile.mkdtemp(prefix="ahc-bench-path-")
    os.environ.update(
        {
            "AHC_DATA_DIR": data,
            "AHC_JWT_SECRET": SECRET,
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": upstream,
            "AHC_LOCAL_MODEL_BASE_URL": upstream,
            "AHC_LOG_LEVEL": "WARNING",
            "AHC_EMBEDDING_MODEL": MODEL,
        }
    )
    if redis:
        os.environ["AHC_REDIS_URL"] = redis
    from api.knowledge_schemas import SearchResponse, SearchResult
    from auth.tokens import Principal
    from core.config import Settings
    from knowledge.search import SearchQuery
    from knowledge.vectors import space_of
    from limits.store import LimitValues
    from server import create_app

    app = create_app(Settings())
    token = jwt.encode({"sub": "u", "org_id": "o", "exp": int(time.time()) + 7200}, SECRET)
    headers = {"Authorization": f"Bearer {token}"}
    body = {"query": QUERY, "k": 4, "mode": "vector", "collection": "default"}
    rows: list[tuple[str, float, float]] = []

    async def row(name: str, call: Callable[[], Awaitable[Any]]) -> None:
        rows.append((name, *await timed(calls, call)))

    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http,
        ):
            text = "\n\n".join(
                f"paragraph {i} about apples oranges policy number {i} " * 10 for i in range(200)
            )
            answer = await http.post(
                "/api/knowledge/documents",
                data={"collection": "default"},
                files={"files": ("a.txt", text.encode(), "text/plain")},
                headers=headers,
            )
            assert answer.status_code == 201, answer.text
            while True:  # until the document is ingested
                processing = await http.get(
                    "/api/knowledge/documents", params={"status": "processing"}, headers=headers
                )
                if not processing.json()["count"]:
                    break
                await asyncio.sleep(0.2)

            async def get(path: str, auth: bool = True) -> None:
                (await http.get(path, headers=headers if auth else None)).raise_for_status()

            async def search(mode: str) -> None:
                answer = await http.post(
                    "/api/knowledge/search", json=dict(body, mode=mode), headers=headers
                )
                answer.raise_for_status()

            await row("HTTP (ASGI): GET /healthz", lambda: get("/healthz", auth=False))
            await row("HTTP (ASGI): GET /api/models (auth, no SQL)", lambda: get("/api/models"))
            await row(
                "HTTP (ASGI): GET /api/knowledge/collections (auth + SQL)",
                lambda: get("/api/knowledge/collections"),
            )
            await row("HTTP (ASGI): POST search, vector", lambda: search("vector"))
            await row("HTTP (ASGI): POST search, hybrid", lambda: search("hybrid"))
            await row("HTTP (ASGI): POST search, keyword", lambda: search("keyword"))

            services = app.state.services
            knowledge = services.knowledge
            search_ = knowledge._search
            principal = Principal("o", "u")
            context = knowledge.context(principal, "knowledge.search", None)
            query = SearchQuery(query=QUERY, k=4, collection="default", mode="vector")
            await row("service search, vector (no HTTP)", lambda: knowledge.search(context, query))
            verifier = app.state.token_verifier

            async def verify() -> None:
                verifier.verify(token)

            await row("auth: JWT verify (cached per token)", verify)
            collections = search_._collections
            await row(
                "collection record (for_search, cached)",
                lambda: collections.for_search("o", "default"),
            )
            limits = search_._limits

            async def hold() -> None:
                held = await limits.hold_tokens(principal, context, lambda: (5, Decimal(0)))
                if held.reservation is not None:
                    held.reservation.release()

            await row("limits: hold + release, org without limits", hold)
            await limits.store.put(
                "o",
                "",
                LimitValues(requests_per_minute=10**9, tokens_per_day=10**12),
                updated_by="b",
            )
            await row(
                f"limits: hold + release, 2 limits ({'Redis' if redis else 'in-process'} counters)",
                hold,
            )
            await limits.store.put("o", "", LimitValues(), updated_by="b")
            embedders = search_._embedders
            record = await collections.for_search("o", "default")
            assert record is not None
            await row(
                "embedder lookup (org key, accounting wrapper)",
                lambda: embedders.embedder("o", record.embedding_model, context),
            )
            embedder = await embedders.embedder("o", record.embedding_model, context)
            await row(
                "query embedding, accounted (lean POST)", lambda: embedder.aembed_query(QUERY)
            )
            sdk = embedder.inner  # type: ignore[attr-defined]
            lean = sdk._session
            sdk._session = None
            await row(
                "query embedding, openai SDK (OpenAIEmbeddings)", lambda: sdk.aembed_query(QUERY)
            )
            sdk._session = lean
            async with aiohttp.ClientSession() as session:

                async def bare() -> None:
                    async with session.post(
                        f"{upstream}/embeddings",
                        json={"model": MODEL, "input": [QUERY], "encoding_format": "base64"},
                        headers={"Authorization": "Bearer sk-bench"},
                    ) as answer:
                        await answer.read()

                await row("query embedding, bare aiohttp (no decode)", bare)
            vector = await embedder.aembed_query(QUERY)
            vectors = search_._vectors
            space = space_of(record.distance)
            await row(
                "vector store search (langchain-chroma in a thread)",
                lambda: vectors.search(record.vector_collection, space, vector, k=4),
            )
            raw = await vectors._collection(record.vector_collection, space)

            async def raw_query() -> None:
                raw.query(
                    query_embeddings=[vector],
                    n_results=4,
                    include=["documents", "metadatas", "distances"],
                )

            await row("raw Chroma query (no thread)", raw_query)
            hits = await knowledge.search(context, query)

            async def serialize() -> None:
                SearchResponse(
                    results=[
                        SearchResult(
                            document_id=h.document_id,
                            chunk_id=h.chunk_id,
                            text=h.text,
                            score=h.score,
                            vector_score=h.vector_score,
                            keyword_score=h.keyword_score,
                            metadata=h.metadata,
                        )
                        for h in hits
                    ],
                    collection="default",
                    mode="vector",
                ).model_dump_json()

            await row("response: SearchResponse built + JSON", serialize)
            tally = type("Tally", (), {"complete": True, "prompt_tokens": 3})()

            async def account() -> None:
                embedder._record([QUERY], tally, time.perf_counter(), None)  # type: ignore[attr-defined]

            await row("accounting: usage event (journal append + buffer)", account)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--redis", help="limit counters in this Redis (a scratch db number)")
    args = parser.parse_args()
    with fake_server("tests.fakes.openai_server", None, "--port", "0") as url:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        rows = asyncio.run(measure(url, args.calls, args.redis))
    lean = os.environ.get("AHC_LEAN_QUERY_EMBEDDINGS", "true")
    print(f"load average at start: {load}; at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{args.calls} calls per row; AHC_LEAN_QUERY_EMBEDDINGS={lean}\n")
    print("| piece | CPU ms/call | wall ms/call |\n|---|---:|---:|")
    for name, cpu, wall in rows:
        print(f"| {name} | {cpu:.3f} | {wall:.3f} |")


if __name__ == "__main__":
    main()
