"""Grounded answers over retrieved chunks: the prompts, the context format, the answer chain.

The answer prompt is a plain ``ChatPromptTemplate`` with the variables ``context`` and
``question`` (and an optional ``history`` placeholder), so a stored prompt template
(``rag-answer``) can replace it without touching the graph. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable

ANSWER_VARIABLES = frozenset({"context", "question"})
"""What the service supplies to an answer prompt (``history`` is optional)."""
OPTIONAL_ANSWER_VARIABLES = frozenset({"history"})
"""The optional placeholder an answer prompt may have (the built-in one has it)."""

RAG_ANSWER_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You answer questions using only the numbered context passages below, taken from "
            "the organization's knowledge base.\n"
            "- Use only facts stated in the context; never add outside knowledge.\n"
            "- Cite the passages you use with their numbers in square brackets, e.g. [1] or "
            "[2][3], right after the sentence they support.\n"
            "- If the context does not contain the answer, say that you don't know based on "
            "the available documents, and do not guess.\n"
            "- Answer in the language of the question.\n\n"
            "Context:\n{context}",
        ),
        MessagesPlaceholder("history", optional=True),
        ("human", "{question}"),
    ]
)
"""The default grounded-answer prompt (the ``rag-answer`` template's default)."""

CONDENSE_QUESTION_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "Rewrite the user's follow-up question as one standalone question that can be "
            "understood without the conversation above it: resolve pronouns and references "
            "from the conversation. Keep the language of the follow-up question. Reply with "
            "the question only, without answering it.",
        ),
        MessagesPlaceholder("history"),
        ("human", "Follow-up question: {question}"),
    ]
)
"""Turns a follow-up ("and for contractors?") into a search query of its own."""

NOT_FOUND_ANSWER = (
    "I couldn't find anything about this in the knowledge base, so I can't answer it "
    "from the available documents."
)
"""The answer when no retrieved chunk is relevant: the model is not called."""

SNIPPET_CHARS = 300
"""Longest snippet of a chunk in a citation."""


def format_context(hits: Sequence[Mapping[str, Any]]) -> str:
    """Number the chunks for the prompt: ``[1] (handbook.pdf, page 3)`` then the text.

    ``hits`` are search hits with ``text`` and ``metadata`` (``filename``, ``page``,
    ``section``); the numbers are what the model cites as ``[n]``.
    """
    blocks = []
    for number, hit in enumerate(hits, start=1):
        meta = hit.get("metadata") or {}
        source = [str(meta.get("filename") or hit.get("document_id") or "document")]
        if meta.get("page") is not None:
            source.append(f"page {meta['page']}")
        if meta.get("section"):
            source.append(f"section {meta['section']}")
        blocks.append(f"[{number}] ({', '.join(source)})\n{str(hit.get('text', '')).strip()}")
    return "\n\n".join(blocks)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of ``text`` on one line, at most ``limit`` characters (cut at a word)."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "…"


def check_answer_prompt(prompt: ChatPromptTemplate) -> None:
    """Refuse a prompt whose variables are not exactly what the service supplies.

    It must use ``{context}`` and ``{question}``, nothing else, and may have an optional
    ``history`` placeholder (left empty: follow-ups are rewritten into a standalone question).
    """
    required = set(prompt.input_variables)
    extra = required - ANSWER_VARIABLES
    if extra:
        names = ", ".join(sorted(extra))
        raise ValueError(f"an answer prompt may use only {{context}} and {{question}}; got {names}")
    missing = ANSWER_VARIABLES - required
    if missing:
        names = ", ".join("{" + name + "}" for name in sorted(missing))
        raise ValueError(f"an answer prompt must use {{context}} and {{question}}; missing {names}")
    optional = set(prompt.optional_variables) - required - OPTIONAL_ANSWER_VARIABLES
    if optional:
        names = ", ".join(sorted(optional))
        raise ValueError(
            f"an answer prompt's only optional placeholder may be 'history'; got {names}"
        )


def build_answer_chain(llm: Runnable, prompt: ChatPromptTemplate = RAG_ANSWER_PROMPT) -> Runnable:
    """``prompt | llm``: ``{"context", "question"[, "history"]}`` in, the model's message out."""
    check_answer_prompt(prompt)
    return (prompt | llm).with_config(run_name="rag_answer")


def build_condense_chain(llm: BaseChatModel | Runnable) -> Runnable:
    """``condense prompt | llm``: ``{"history", "question"}`` in, the standalone question out."""
    return (CONDENSE_QUESTION_PROMPT | llm).with_config(run_name="condense_question")
