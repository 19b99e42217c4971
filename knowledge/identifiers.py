"""Identifiers in a question — codes, product and system names — and whether BM25 found them.

Keyword search matters most for identifiers ("HDHP", "Coupa", "SEV1"): an embedder knows
little about a name it never saw, so such a question's best similarity is often low
although BM25 ranks the right chunk first. The relevance gate answers these questions when
a few of the chunks BM25 finds hold an identifier of the question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from knowledge.keywords import normalized, terms, word_pattern

RARE_CHUNKS = 3
"""An identifier held by at most this many of the keyword hits is specific enough."""

_LATIN_WORD = re.compile(r"[A-Za-z0-9]+")
_SENTENCE_END = re.compile(r"[.!?]\s*$")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")


def identifiers(question: str) -> set[str]:
    """The keyword terms of the words of ``question`` that look like names or codes.

    A word counts when it mixes letters and digits ("M3", "SEV1"), is capitalized beyond
    its first letter ("HDHP", "PagerDuty"), is capitalized but does not start a sentence
    ("What is Coupa?"), or is any Latin word of two letters or more in a Korean question
    ("Navan 제출 기한은?").
    """
    korean = _HANGUL.search(question) is not None
    found: set[str] = set()
    for match in _LATIN_WORD.finditer(question):
        word = match.group()
        starts_sentence = not question[: match.start()].strip() or bool(
            _SENTENCE_END.search(question[: match.start()])
        )
        has_digit, has_alpha = any(c.isdigit() for c in word), any(c.isalpha() for c in word)
        if (
            (has_digit and has_alpha)
            or (len(word) > 1 and any(c.isupper() for c in word[1:]))
            or (len(word) > 1 and word[0].isupper() and not starts_sentence)
            or (korean and has_alpha and len(word) > 1)
        ):
            found.update(terms(word))
    return found


def rare_identifier_found(question: str, keyword_texts: Sequence[str]) -> bool:
    """Whether the keyword hits hold an identifier of ``question`` that is rare.

    ``keyword_texts``: the texts of the keyword hits (the query's best BM25 matches). Rare:
    held by at least one and at most :data:`RARE_CHUNKS` of them; a common word fills them
    all. The hit holding it need not be BM25's first: other words of the question ("used",
    "about") can outweigh a name that two chunks share.
    """
    wanted = identifiers(question)
    if not wanted or not keyword_texts:
        return False
    texts = [normalized(text) for text in keyword_texts]
    for term in wanted:
        pattern = word_pattern(term)
        if 1 <= sum(1 for text in texts if pattern.search(text)) <= RARE_CHUNKS:
            return True
    return False
