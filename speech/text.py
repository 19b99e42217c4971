"""Text too long for one synthesis request, cut where a speaker would pause.

Providers cap one request (OpenAI 4096 characters); longer texts are spoken piece by piece
and the audio joined. Pieces end at sentence ends (``.``, ``!``, ``?``, their CJK forms,
line breaks, and Korean final endings such as ``-니다`` or ``-세요`` written without a
period), else at a space, and only as a last resort mid-word.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(
    r"(?<=[.!?。！？…])\s+|\n\s*|(?:(?<=니다)|(?<=[까세어아에예해]요)|(?<=죠))\s+(?=\S)"
)
_SPACE = re.compile(r"\s+")


def split_for_synthesis(text: str, limit: int) -> list[str]:
    """``text`` as pieces of at most ``limit`` characters, whole sentences where possible."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    pieces: list[str] = []
    current = ""
    for sentence in _pieces(text, _SENTENCE_END):
        for part in _fit(sentence, limit):
            if current and len(current) + 1 + len(part) > limit:
                pieces.append(current)
                current = part
            else:
                current = f"{current} {part}" if current else part
    if current:
        pieces.append(current)
    return pieces


def _pieces(text: str, pattern: re.Pattern[str]) -> list[str]:
    return [p.strip() for p in pattern.split(text) if p and p.strip()]


def _fit(sentence: str, limit: int) -> list[str]:
    """A sentence longer than ``limit`` cut at spaces (or, failing that, anywhere)."""
    if len(sentence) <= limit:
        return [sentence]
    parts: list[str] = []
    current = ""
    for word in _pieces(sentence, _SPACE):
        while len(word) > limit:  # one "word" longer than a piece: cut it
            if current:
                parts.append(current)
                current = ""
            parts.append(word[:limit])
            word = word[limit:]
        if current and len(current) + 1 + len(word) > limit:
            parts.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        parts.append(current)
    return parts
