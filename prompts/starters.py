"""System-wide starter templates, shipped with the service (version 1, scope ``system``).

Every org sees them until it stores a template of the same name, which then replaces the
starter for that org only. ``rag-answer`` is the RAG graph's own default answer prompt
(``chains.rag.RAG_ANSWER_PROMPT``), so the starter and the default answer never drift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langchain_core.prompts import ChatPromptTemplate

from chains.rag import RAG_ANSWER_PROMPT
from prompts.content import TemplateContent, checked_content
from prompts.render import messages_of

STARTERS_CREATED_AT = datetime(2026, 12, 1, tzinfo=UTC)
STARTER_AUTHOR = "system"


@dataclass(frozen=True)
class StarterTemplate:
    """A starter: its metadata, checked content and built prompt."""

    name: str
    description: str
    tags: tuple[str, ...]
    content: TemplateContent
    prompt: ChatPromptTemplate
    version: int = 1
    created_at: datetime = STARTERS_CREATED_AT


def _starter(
    name: str,
    description: str,
    tags: Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    input_variables: Sequence[str],
) -> StarterTemplate:
    content, prompt = checked_content(messages, "f-string", input_variables=input_variables)
    return StarterTemplate(name, description, tuple(tags), content, prompt)


_STARTERS = (
    _starter(
        "summarize",
        "Summarize a text faithfully and concisely, in the text's language.",
        ["writing", "summary"],
        [
            {
                "role": "system",
                "content": "You summarize texts faithfully and concisely. Keep the key facts, "
                "numbers, names and decisions; never add anything the text does not say. Write "
                "the summary in the language of the text.",
            },
            {"role": "user", "content": "Summarize the following text:\n\n{text}"},
        ],
        ["text"],
    ),
    _starter(
        "translate",
        "Translate a text into a target language, keeping meaning, tone and formatting.",
        ["writing", "translation"],
        [
            {
                "role": "system",
                "content": "You are a professional translator. Translate the user's text into "
                "{target_language}. Keep the meaning, tone and formatting (lists, line breaks, "
                "Markdown). Reply with the translation only.",
            },
            {"role": "user", "content": "{text}"},
        ],
        ["target_language", "text"],
    ),
    _starter(
        "rag-answer",
        "Answer a question from numbered knowledge-base passages, citing them as [n].",
        ["rag", "knowledge"],
        messages_of(RAG_ANSWER_PROMPT),
        ["context", "question"],
    ),
    _starter(
        "email-draft",
        "Draft a clear, polite business email from its purpose and key points.",
        ["writing", "email"],
        [
            {
                "role": "system",
                "content": "You write clear, polite and concise business emails. Write a "
                "subject line, then the email body. Use the language of the key points unless "
                "they ask for another.",
            },
            {
                "role": "user",
                "content": "Write an email to {recipient}.\nPurpose: {purpose}\n"
                "Key points:\n{key_points}",
            },
        ],
        ["key_points", "purpose", "recipient"],
    ),
)

STARTERS: dict[str, StarterTemplate] = {s.name: s for s in _STARTERS}
"""The starters by name."""
