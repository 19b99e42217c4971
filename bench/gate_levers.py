"""Levers for the relevance gate: can offline features refuse unanswerable questions?

The RAG graph refuses ("not found", no model call) when the search's verdict
(``SearchHit.relevant``) is False. Issue 14 asks for ≥ 0.90 of the unanswerable questions
refused while ≥ 0.97 of the answerable ones are answered, with the embedded default
embedder. This script measures the levers a gate could use, over the service's own pipeline
(``bench/rag_quality.py:open_pipeline``, the 24 documents of ``tests/data/knowledge``):

- the shipped verdict (``relevant``, the top hit's);
- the query's best similarity (``best``, e5use) and its parts: the best e5 cosine (``e5``)
  and the best USE cosine (``use``) over the vector leg's 20 nearest chunks;
- query-performance prediction: ``margin`` (best − mean of the next 9) and ``z`` ((best −
  mean) / std over the 20 nearest), the keyword leg's best BM25 in keyword units
  (``kw_units``), whether the two legs' top chunks come from one document (``agree``),
  whether the nearest chunk is in the other script than the question (``cross``);
- sentence-level evidence: the hybrid top-4 hits (what the graph sees) split into
  sentences, each scored against the question with e5 (``sent_e5``), USE (``sent_use``)
  and the e5use mix 0.7/0.3 (``sent_mix``); their CPU cost per query is measured (the
  sentences embedded at query time, no cache).

Rules are tuned on ``questions.jsonl`` (answered ≥ 93/96 = the shipped rule's) and
``unanswerable.jsonl`` only; ``holdout_cross.jsonl`` (answerable, cross-lingual) and
``holdout_unanswerable.jsonl`` (written before any tuning) are reported apart. Rules: one
threshold per feature, per-language-pair thresholds (same script / cross), and small
logistic combinations (2-4 features, L2, standardised; the threshold again set for
answered ≥ 93/96). The identifier rule (``knowledge.identifiers``) is always kept.

Usage::

    .venv/bin/python bench/gate_levers.py [--top 4] [--threads 1] [--dump FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rag_quality as rq

from knowledge.identifiers import rare_identifier_found
from knowledge.language import script_of
from knowledge.search import keyword_unit
from providers.embeddings import E5USE_E5_WEIGHT, E5Embeddings, UseEmbeddings

SETS = ("ans", "ans_holdout", "rare", "un", "un_holdout")
FILES = {
    "ans": "questions.jsonl",
    "ans_holdout": "holdout_cross.jsonl",
    "rare": "rare_terms.jsonl",
    "un": "unanswerable.jsonl",
    "un_holdout": "holdout_unanswerable.jsonl",
}
FEATURES = (
    "best",
    "e5",
    "use",
    "margin",
    "z",
    "kw_units",
    "agree",
    "cross",
    "sent_e5",
    "sent_use",
    "sent_mix",
)
BINARY = ("agree", "cross")
"""Features that are 0 or 1: only in combinations."""
ALLOWED_REFUSALS = 3  # of the 96 answerable questions: the shipped rule's (0.97)
_SPLIT = re.compile(r"\n+|(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """Lines and sentences of a chunk, bullets and heading marks stripped (≥ 8 chars)."""
    found = []
    for part in _SPLIT.split(text):
        piece = part.strip().lstrip("-*#0123456789. ").strip()
        if len(piece) >= 8:
            found.append(piece)
    return found


def cosines(query: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Cosine of ``query`` with each row."""
    rows = np.atleast_2d(rows)
    return np.asarray(rows @ query / (np.linalg.norm(rows, axis=1) * np.linalg.norm(query)))


class Engines:
    """e5 and USE apart (the halves of local-e5use), passages cached by text."""

    def __init__(self, threads: int) -> None:
        self.e5 = E5Embeddings(threads=threads)
        self.use = UseEmbeddings(threads=threads)
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def passages(self, kind: str, texts: Sequence[str]) -> np.ndarray:
        """Passage vectors of ``texts`` by one engine (``e5`` or ``use``), cached."""
        engine = self.e5 if kind == "e5" else self.use
        todo = [t for t in dict.fromkeys(texts) if (kind, t) not in self._cache]
        if todo:
            for text, vector in zip(todo, engine.embed_documents(todo), strict=True):
                self._cache[(kind, text)] = np.asarray(vector)
        return np.asarray([self._cache[(kind, t)] for t in texts])

    def query(self, kind: str, text: str) -> np.ndarray:
        """The query vector of ``text`` by one engine."""
        engine = self.e5 if kind == "e5" else self.use
        return np.asarray(engine.embed_query(text))


def load_sets(data: Path) -> list[dict[str, Any]]:
    """Every question of the five sets, with its set name and group."""
    found = []
    for name, file in FILES.items():
        for row in rq._jsonl(data / file):
            group = row.get("kind") or (
                "cross" if row.get("cross_lingual") else ("rare" if "term" in row else row["lang"])
            )
            found.append({"set": name, "group": group, "q": row["question"]})
    return found


async def measure(
    pipeline: rq.Pipeline, engines: Engines, question: str, top: int
) -> dict[str, float]:
    """The features of one question, searched as the RAG graph and the legs search."""
    hybrid = (await rq.timed_search(pipeline, question, top, "hybrid")).hits
    vector = (await rq.timed_search(pipeline, question, 20, "vector")).hits
    keyword = (await rq.timed_search(pipeline, question, 20, "keyword")).hits
    scores = [h.vector_score or 0.0 for h in vector]
    own = script_of(question)
    f: dict[str, float] = {
        "relevant": float(bool(hybrid) and hybrid[0].relevant),
        "best": scores[0] if scores else 0.0,
        "margin": scores[0] - float(np.mean(scores[1:10])) if len(scores) > 1 else 0.0,
        "z": (scores[0] - float(np.mean(scores))) / (float(np.std(scores)) + 1e-9)
        if scores
        else 0.0,
        "kw_units": (keyword[0].keyword_score or 0.0) / keyword_unit(pipeline.chunks)
        if keyword
        else 0.0,
        "agree": float(
            bool(vector and keyword) and rq.filename(vector[0]) == rq.filename(keyword[0])
        ),
        "cross": float(bool(vector) and script_of(vector[0].text) != own),
        "identifier": float(rare_identifier_found(question, [h.text for h in keyword])),
    }
    texts = [h.text for h in vector]
    for kind in ("e5", "use"):
        f[kind] = float(cosines(engines.query(kind, question), engines.passages(kind, texts)).max())
    # Sentence-level evidence, timed as a gate would run it: embed at query time.
    pieces = [s for h in hybrid for s in sentences(h.text)] or [""]
    f["sentences"] = float(len(pieces))
    sims: dict[str, np.ndarray] = {}
    for kind in ("e5", "use"):
        cpu = time.process_time()
        query = engines.query(kind, question)
        vectors = (engines.e5 if kind == "e5" else engines.use).embed_documents(pieces)
        sims[kind] = cosines(query, np.asarray(vectors))
        f[f"cpu_ms_{kind}"] = (time.process_time() - cpu) * 1000
    f["sent_e5"] = float(sims["e5"].max())
    f["sent_use"] = float(sims["use"].max())
    w = E5USE_E5_WEIGHT
    f["sent_mix"] = float((w * sims["e5"] + (1 - w) * sims["use"]).max())
    return f


Rule = Callable[[dict[str, Any]], bool]


def shares(rows: list[dict[str, Any]], rule: Rule) -> dict[str, float]:
    """Answered share of the answerable sets, refused share of the unanswerable ones."""
    out = {}
    for name in SETS:
        flags = [bool(r["identifier"]) or rule(r) for r in rows if r["set"] == name]
        answered = sum(flags) / len(flags) if flags else float("nan")
        out[name] = answered if not name.startswith("un") else 1 - answered
    for name in ("un", "un_holdout"):
        company = [
            bool(r["identifier"]) or rule(r)
            for r in rows
            if r["set"] == name and r["group"] == "company"
        ]
        out[f"{name}_company"] = 1 - sum(company) / len(company)
    return out


def threshold_for(values: Sequence[float]) -> float:
    """The highest bar that still answers all but :data:`ALLOWED_REFUSALS` of ``values``."""
    return sorted(values)[ALLOWED_REFUSALS]


def logistic(x: np.ndarray, y: np.ndarray, lam: float = 1.0, steps: int = 3000) -> np.ndarray:
    """Weights (last: bias) of an L2 logistic regression on standardised features."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        w -= 0.5 * (z.T @ (p - y) + lam * w) / len(y)
        b -= 0.5 * float((p - y).mean())
    return np.append(w / sd, b - (w / sd) @ mu)


def pair_rule(feature: str, same: float, cross: float) -> Rule:
    """``feature`` >= ``same`` (nearest chunk in the question's script) or ``cross``."""
    return lambda r: bool(r[feature] >= (cross if r["cross"] else same))


def linear(r: dict[str, Any], keys: Sequence[str], w: np.ndarray) -> float:
    """A logistic model's score (log-odds) of one question."""
    return float(np.dot([r[k] for k in keys], w[:-1]) + w[-1])


def linear_rule(keys: Sequence[str], w: np.ndarray, t: float) -> Rule:
    """The model's score reaches ``t``."""
    return lambda r: linear(r, keys, w) >= t


def rules(rows: list[dict[str, Any]]) -> list[tuple[str, Rule]]:
    """The candidate rules, each tuned on the tuning sets only."""
    ans = [r for r in rows if r["set"] == "ans"]
    found: list[tuple[str, Rule]] = [
        ("shipped verdict (SearchHit.relevant)", lambda r: r["relevant"] > 0)
    ]
    for f in FEATURES:
        if f in BINARY:
            continue
        t = threshold_for([r[f] for r in ans])
        found.append((f"{f} >= {t:.3f}", pair_rule(f, t, t)))
    for f in ("best", "sent_mix", "e5"):
        # Two bars (nearest chunk in the question's script or not), tuned jointly.
        same_cuts = sorted(r[f] for r in ans if not r["cross"])[: ALLOWED_REFUSALS + 1]
        cross_cuts = sorted(r[f] for r in ans if r["cross"])[: ALLOWED_REFUSALS + 1]
        best: tuple[float, str, Rule] | None = None
        for same, cross in itertools.product(same_cuts or [0.0], cross_cuts or [0.0]):
            rule = pair_rule(f, same, cross)
            got = shares(rows, rule)
            if got["ans"] * len(ans) < len(ans) - ALLOWED_REFUSALS - 0.5:
                continue
            name = f"{f} >= {same:.3f} (same script) / {cross:.3f} (cross)"
            if best is None or got["un"] > best[0]:
                best = (got["un"], name, rule)
        if best is not None:
            found.append((best[1], best[2]))
    tune = [r for r in rows if r["set"] in ("ans", "un")]
    y = np.array([1.0 if r["set"] == "ans" else 0.0 for r in tune])
    combos = []
    for n in (1, 2, 3):
        for extra in itertools.combinations([f for f in FEATURES if f != "best"], n):
            keys = ("best", *extra)
            w = logistic(np.array([[r[k] for k in keys] for r in tune]), y)
            t = threshold_for([linear(r, keys, w) for r in ans])
            rule = linear_rule(keys, w, t)
            combos.append((shares(rows, rule)["un"], "logistic(" + ", ".join(keys) + ")", rule))
    combos.sort(key=lambda c: -c[0])
    found += [(name, rule) for _, name, rule in combos[:8]]
    return found


def render(rows: list[dict[str, Any]]) -> str:
    """The features' spread and the rules table."""
    lines = [
        "| feature | answerable p3 | p5 | median | unanswerable company median | p70 | max "
        "| holdout unanswerable company median | p70 |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for f in FEATURES:
        a = [r[f] for r in rows if r["set"] == "ans"]
        u = [r[f] for r in rows if r["set"] == "un" and r["group"] == "company"]
        h = [r[f] for r in rows if r["set"] == "un_holdout" and r["group"] == "company"]
        p = np.percentile
        lines.append(
            f"| {f} | {p(a, 3):.3f} | {p(a, 5):.3f} | {p(a, 50):.3f} | {p(u, 50):.3f} "
            f"| {p(u, 70):.3f} | {max(u):.3f} | {p(h, 50):.3f} | {p(h, 70):.3f} |"
        )
    lines += [
        "",
        "Tuned on questions.jsonl + unanswerable.jsonl; holdout = holdout_cross.jsonl (answered) "
        "and holdout_unanswerable.jsonl (refused). The identifier rule is kept in every rule.",
        "",
        "| rule | answered | holdout_cross answered | rare terms answered | refused "
        "| refused company | holdout refused | holdout refused company |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, rule in rules(rows):
        s = shares(rows, rule)
        lines.append(
            f"| {name} | {s['ans']:.2f} | {s['ans_holdout']:.2f} | {s['rare']:.2f} "
            f"| {s['un']:.2f} | {s['un_company']:.2f} | {s['un_holdout']:.2f} "
            f"| {s['un_holdout_company']:.2f} |"
        )
    cpu = {k: [r[f"cpu_ms_{k}"] for r in rows] for k in ("e5", "use")}
    n = [r["sentences"] for r in rows]
    lines += [
        "",
        f"Sentence-level evidence at query time (top hits split into {np.median(n):.0f} "
        f"sentences, median): CPU ms per query, median / p95: e5 {np.median(cpu['e5']):.1f} / "
        f"{np.percentile(cpu['e5'], 95):.1f}, USE {np.median(cpu['use']):.1f} / "
        f"{np.percentile(cpu['use'], 95):.1f}.",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> None:
    """Ingest, measure every question, print the tables."""
    documents = rq.load_documents(rq.DATA_DIR)
    questions = load_sets(rq.DATA_DIR)
    print(f"load average {os.getloadavg()}", file=sys.stderr, flush=True)
    async with rq.open_pipeline("local-e5use", documents, threads=args.threads) as pipeline:
        engines = Engines(args.threads)
        rows = []
        for item in questions:
            rows.append({**item, **await measure(pipeline, engines, item["q"], args.top)})
    if args.dump:
        args.dump.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    print(f"# bench/gate_levers.py, load average {os.getloadavg()[0]:.1f} (2 shared cores)")
    print()
    print(render(rows))


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=4, help="hits the RAG graph reads (k)")
    parser.add_argument("--threads", type=int, default=1, help="embedding engine threads")
    parser.add_argument(
        "--dump", type=Path, default=None, help="every question's features (JSON lines)"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
