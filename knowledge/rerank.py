"""The rerank stage's pure parts: the LLM judge's prompt and verdict, and the reordering.

A search asked to rerank hands its best candidates to a judge (``services.knowledge.rerank``):
a chat model that grades each numbered passage's relevance to the question (structured
output, :class:`RelevanceVerdict`), or a rerank endpoint that scores each document. These
functions turn the grades or scores into the search's final order and its relevance verdict,
per hit: a passage graded below the bar does not count as answering, and a search none of
whose passages reaches it is the refusal signal ("no chunk answers this").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Literal

from langchain_core.prompts import ChatPromptTemplate
from pydantic import BaseModel, Field

from knowledge.search import SearchHit

MAX_GRADE = 3
"""The judge's scale is 0..3 (see :data:`JUDGE_PROMPT`); a hit's ``rerank_score`` is grade / 3."""

JUDGE_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You grade search results. For each numbered passage, judge whether it answers "
            "the question, whatever the languages of the question and the passage:\n"
            "3 = it states the answer;\n"
            "2 = it states part of the answer, or facts the answer needs;\n"
            "1 = it is on the topic but does not answer;\n"
            "0 = it is unrelated.\n"
            "Grade every passage once, by its number. Do not answer the question.",
        ),
        ("human", "Question: {question}\n\nPassages:\n{passages}"),
    ]
)
"""The judge's prompt: the question, then the candidates as ``[n] text``."""


class PassageGrade(BaseModel):
    """The judge's grade of one passage."""

    passage: int = Field(description="The passage's number, as in [n].")
    grade: Literal[0, 1, 2, 3] = Field(
        description="3 answers, 2 partly answers, 1 on topic only, 0 unrelated."
    )


class RelevanceVerdict(BaseModel):
    """The judge's structured answer: one grade per passage."""

    grades: list[PassageGrade]


def judge_passages(hits: Sequence[SearchHit], max_chars: int) -> str:
    """The candidates numbered for the judge, each cut to ``max_chars`` characters."""
    blocks = []
    for number, hit in enumerate(hits, start=1):
        text = " ".join(hit.text.split())
        if len(text) > max_chars:
            text = text[:max_chars].rsplit(" ", 1)[0] + " ..."
        blocks.append(f"[{number}] {text}")
    return "\n\n".join(blocks)


def grades_by_position(verdict: RelevanceVerdict, count: int) -> list[int]:
    """Each candidate's grade, by position (a passage the judge left out is graded 0).

    A number outside ``1..count`` is ignored; a passage graded twice keeps its best grade.
    """
    grades = [0] * count
    for item in verdict.grades:
        if 1 <= item.passage <= count:
            grades[item.passage - 1] = max(grades[item.passage - 1], item.grade)
    return grades


def reorder(
    hits: Sequence[SearchHit],
    scores: Sequence[float],
    *,
    k: int,
    min_score: float | None,
) -> list[SearchHit]:
    """The best ``k`` hits by the judge's ``scores`` (ties keep the search's order).

    Each hit carries its score as ``rerank_score`` and, when ``min_score`` is set, its own
    verdict ``relevant = score >= min_score``; without a bar the search's verdict stays.
    """
    order = sorted(range(len(hits)), key=lambda i: -scores[i])  # stable: the search's order
    reranked = []
    for i in order[:k]:
        score = round(float(scores[i]), 6)
        relevant = hits[i].relevant if min_score is None else score >= min_score
        reranked.append(replace(hits[i], rerank_score=score, relevant=relevant))
    return reranked


def scores_from_results(results: Sequence[Mapping[str, object]], count: int) -> list[float]:
    """A rerank endpoint's ``results`` (``index``, ``relevance_score``) as a score per position.

    A document the endpoint did not return (``top_n`` below ``count``) scores below every
    returned one.
    """
    returned = [
        float(r["relevance_score"])  # type: ignore[arg-type]
        for r in results
        if isinstance(r.get("index"), int) and isinstance(r.get("relevance_score"), int | float)
    ]
    floor = min(returned, default=0.0) - 1.0
    scores = [floor] * count
    for result in results:
        index, score = result.get("index"), result.get("relevance_score")
        if isinstance(index, int) and 0 <= index < count and isinstance(score, int | float):
            scores[index] = float(score)
    return scores
