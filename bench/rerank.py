"""The rerank stage: what it adds to a search (over fakes), and its quality (your provider).

**Cost mode** (the default) measures what the stage adds to a search, not its quality: the
knowledge service is built in-process as ``bench/rag_quality.py`` builds it (its
``open_pipeline``: SQLite, embedded Chroma, the in-process job queue, accounting and limits
on), over the documents of ``tests/data/knowledge/`` embedded by the fake OpenAI server
(``text-embedding-3-small``, instant), and each question of ``questions.jsonl`` is searched
(hybrid, ``--k``) four ways, interleaved question by question:

- ``off``: no rerank;
- ``judge``: the LLM judge, ``ChatOpenAI`` with structured output through the metering gate,
  against the fake OpenAI server (it answers an example of the schema in microseconds);
- ``endpoint``: the rerank endpoint client against ``tests/fakes/rerank_server.py``.
- ``off, k=10``: the search of the judge's candidates without the call (what ranking more
  hits costs; ``AHC_KNOWLEDGE_RERANK_CANDIDATES``).

Both fakes run in processes of their own, so this process's CPU time is the service's alone.
Reported per stage: wall p50/p95 and CPU ms p50 per search, the added wall and CPU (p50 of the
per-question differences from ``off``), and the judge's prompt in tokens (tiktoken, the
candidates as the judge sees them): the provider's own latency and price come on top.

**Provider mode** (``--provider``) measures quality with your own key: the same pipeline with
the embedding model of ``--embedding`` (default: the service's, ``local-e5use``), and the
provider configured as for the service, from the environment (``OPENAI_API_KEY``,
``OPENAI_BASE_URL``, ``AHC_OPENAI_MODELS``; or ``AHC_KNOWLEDGE_RERANK_URL``,
``AHC_KNOWLEDGE_RERANK_API_KEY``, ``AHC_KNOWLEDGE_RERANK_MODELS``). Every question is searched
without and with ``--rerank`` (a chat model: the judge; or the endpoint's model); reported per
question group: hit@1, hit@k, MRR@k; then as the RAG graph decides (a search answers when one
of its hits is relevant): the share of answerable questions answered (and answered with the
right document among the relevant hits), and the share of ``unanswerable.jsonl`` refused.
Each question costs one judge call: ~130 calls for the shipped set.

    .venv/bin/python bench/rerank.py [--k 5] [--limit 40] [--out bench/results/FILE.txt]
    OPENAI_API_KEY=sk-... .venv/bin/python bench/rerank.py --provider --rerank gpt-4o-mini
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import fake_server, fake_upstream
from bench.rag_quality import (
    DATA_DIR,
    Pipeline,
    Question,
    load_documents,
    load_questions,
    load_unanswerable,
    open_pipeline,
    percentile,
)
from core.tokenizer import count_text_tokens
from knowledge.rerank import JUDGE_PROMPT, judge_passages
from knowledge.search import SearchHit, SearchQuery

JUDGE_MODEL = "gpt-4o-mini"
ENDPOINT_MODEL = "fake-reranker"
GROUPS = ("ko", "en", "cross", "holdout", "all")


def fake_rerank(core: int = 1) -> contextlib.AbstractContextManager[str]:
    """The fake rerank endpoint in its own process, pinned to ``core``; yields its URL."""
    return fake_server("tests.fakes.rerank_server", core)


async def timed(
    pipeline: Pipeline, question: str, k: int, rerank: bool | str
) -> tuple[list[SearchHit], float, float, str | None]:
    """One search: its hits, wall and CPU ms, and the rerank error (None: applied or off)."""
    wall, cpu = time.perf_counter(), time.process_time()
    found = await pipeline.service.find(
        pipeline.context, SearchQuery(question, k=k, mode="hybrid", rerank=rerank)
    )
    spent = (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000
    error = found.rerank.error if found.rerank is not None else None
    return found.hits, *spent, error


async def judge_prompt_tokens(pipeline: Pipeline, question: str, candidates: int) -> int:
    """The tokens of the judge's prompt for ``question`` (its candidates, as it sees them)."""
    hits = await pipeline.service.search(
        pipeline.context, SearchQuery(question, k=candidates, mode="hybrid", rerank=False)
    )
    chars = int(os.environ.get("AHC_KNOWLEDGE_RERANK_PASSAGE_CHARS", "1500"))
    messages = JUDGE_PROMPT.format_messages(question=question, passages=judge_passages(hits, chars))
    return sum(count_text_tokens(str(m.content), JUDGE_MODEL) + 3 for m in messages) + 3


@dataclass
class Stage:
    """The timings of one way of searching."""

    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    errors: int = 0


async def run_cost(args: argparse.Namespace) -> str:
    """The cost table (fakes as providers)."""
    questions = load_questions(args.data)[: args.limit]
    documents = load_documents(args.data)
    with fake_upstream() as upstream, fake_rerank() as endpoint:
        os.environ.update(
            OPENAI_API_KEY="sk-bench",
            OPENAI_BASE_URL=upstream,
            AHC_KNOWLEDGE_RERANK_URL=f"{endpoint}/v1/rerank",
            AHC_KNOWLEDGE_RERANK_API_KEY="rk-test",
            AHC_KNOWLEDGE_RERANK_MODELS=f'["{ENDPOINT_MODEL}"]',
            AHC_UPSTREAM_MAX_RETRIES="0",
        )
        async with open_pipeline("text-embedding-3-small", documents, threads=1) as pipeline:
            candidates = max(args.k, int(os.environ.get("AHC_KNOWLEDGE_RERANK_CANDIDATES", 10)))
            names = ("off", f"off, k={candidates}", f"judge ({JUDGE_MODEL})", "endpoint")
            stages = {name: Stage(name) for name in names}
            ways: dict[str, tuple[int, bool | str]] = dict(
                zip(
                    stages,
                    [
                        (args.k, False),
                        (candidates, False),  # the candidates' search, without the call
                        (args.k, JUDGE_MODEL),
                        (args.k, ENDPOINT_MODEL),
                    ],
                    strict=True,
                )
            )
            for question in questions[:3]:  # warm-up: clients, pools, caches
                for k, rerank in ways.values():
                    await timed(pipeline, question.question, k, rerank)
            tokens: list[float] = []
            for question in questions:
                for name, (k, rerank) in ways.items():
                    _, wall, cpu, error = await timed(pipeline, question.question, k, rerank)
                    stages[name].wall.append(wall)
                    stages[name].cpu.append(cpu)
                    stages[name].errors += error is not None
                tokens.append(await judge_prompt_tokens(pipeline, question.question, candidates))
    off = stages["off"]
    lines = [
        f"# rerank stage cost, {len(questions)} questions, hybrid k={args.k}, "
        f"{pipeline.chunks} chunks; load avg before/after {args.load_before} / "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "",
        "| stage | searches | wall ms p50 | p95 | CPU ms p50 | added wall ms p50 "
        "| added CPU ms p50 | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for stage in stages.values():
        added_wall = [a - b for a, b in zip(stage.wall, off.wall, strict=True)]
        added_cpu = [a - b for a, b in zip(stage.cpu, off.cpu, strict=True)]
        lines.append(
            f"| {stage.name} | {len(stage.wall)} | {percentile(stage.wall, 0.5):.1f} "
            f"| {percentile(stage.wall, 0.95):.1f} | {percentile(stage.cpu, 0.5):.1f} "
            f"| {percentile(added_wall, 0.5):.1f} | {percentile(added_cpu, 0.5):.1f} "
            f"| {stage.errors} |"
        )
    lines += [
        "",
        f"judge prompt ({JUDGE_MODEL} tokens, {candidates} candidates): "
        f"p50 {percentile(tokens, 0.5):.0f}, p95 {percentile(tokens, 0.95):.0f}; "
        "the reply is ~10 tokens per candidate. Fakes answer in microseconds: the "
        "provider's own latency comes on top.",
    ]
    return "\n".join(lines)


@dataclass
class Quality:
    """Ranking metrics of one group."""

    n: int = 0
    hit1: int = 0
    hitk: int = 0
    rr: float = 0.0

    def add(self, rank: int | None) -> None:
        """One question whose document first appears at ``rank`` (None: not found)."""
        self.n += 1
        if rank is not None:
            self.hitk += 1
            self.hit1 += rank == 1
            self.rr += 1 / rank


def rank_of(hits: list[SearchHit], question: Question) -> int | None:
    names = [str(hit.metadata.get("filename", "")) for hit in hits]
    return names.index(question.document) + 1 if question.document in names else None


async def run_provider(args: argparse.Namespace) -> str:
    """The quality table with the configured provider."""
    if not args.rerank:
        raise SystemExit("--provider needs --rerank MODEL (a chat model or the endpoint's model)")
    questions = load_questions(args.data)[: args.limit]
    unanswerable = load_unanswerable(args.data)[: args.limit]
    documents = load_documents(args.data)
    async with open_pipeline(args.embedding, documents, threads=1) as pipeline:
        table: dict[tuple[str, str], Quality] = {}
        answered = {"off": [0, 0], "rerank": [0, 0]}  # answered, with the right document
        refused = {"off": 0, "rerank": 0}
        errors = 0
        ways: dict[str, bool | str] = {"off": False, "rerank": args.rerank}
        for question in questions:
            for name, rerank in ways.items():
                hits, _, _, error = await timed(pipeline, question.question, args.k, rerank)
                errors += error is not None
                rank = rank_of(hits, question)
                groups = ("holdout",) if question.holdout else (question.group, "all")
                for group in groups:
                    table.setdefault((name, group), Quality()).add(rank)
                relevant = [hit for hit in hits if hit.relevant]
                answered[name][0] += bool(relevant)
                answered[name][1] += rank_of(relevant, question) is not None
        for item in unanswerable:
            for name, rerank in ways.items():
                hits, _, _, error = await timed(pipeline, item.question, args.k, rerank)
                errors += error is not None
                refused[name] += not any(hit.relevant for hit in hits)
    answerable = max(len(questions), 1)
    lines = [
        f"# rerank quality: {args.rerank} over {args.embedding}, hybrid k={args.k}, "
        f"{len(questions)} questions, {len(unanswerable)} unanswerable; rerank errors {errors}",
        "",
        f"| rerank | group | n | hit@1 | hit@{args.k} | MRR@{args.k} |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for name in ways:
        for group in GROUPS:
            q = table.get((name, group))
            if q is None or not q.n:
                continue
            lines.append(
                f"| {name} | {group} | {q.n} | {q.hit1 / q.n:.2f} | {q.hitk / q.n:.2f} "
                f"| {q.rr / q.n:.3f} |"
            )
    lines += [
        "",
        "| rerank | answerable answered | with the right document | unanswerable refused |",
    ]
    lines.append("|---|--:|--:|--:|")
    for name in ways:
        lines.append(
            f"| {name} | {answered[name][0] / answerable:.2f} "
            f"| {answered[name][1] / answerable:.2f} "
            f"| {refused[name] / max(len(unanswerable), 1):.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N questions.")
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--provider", action="store_true", help="Quality with your provider.")
    parser.add_argument("--rerank", default=None, help="Provider mode: the judge's model name.")
    parser.add_argument("--embedding", default="local-e5use", help="Provider mode's embedder.")
    parser.add_argument("--out", type=Path, default=None, help="Also write the table here.")
    args = parser.parse_args()
    args.load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("services.knowledge.rerank").setLevel(logging.ERROR)
    report = asyncio.run(run_provider(args) if args.provider else run_cost(args))
    print(report)
    if args.out is not None:
        args.out.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
