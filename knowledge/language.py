"""Which script a text is mostly written in: enough to tell Korean from English chunks.

Search uses it to take the language bias out of similarities: a multilingual embedder
scores any chunk in the query's own language higher than an equally relevant one in the
other language, which buries the answer to a cross-lingual question.
"""

from __future__ import annotations

HANGUL_SHARE = 0.3
"""A text whose letters are at least this share Hangul is Korean (English words and
product names are common inside Korean text, rarely the reverse)."""


def script_of(text: str) -> str:
    """``"ko"`` (mostly Hangul), ``"latin"`` (mostly ASCII letters) or ``""`` (neither)."""
    hangul = latin = 0
    for char in text:
        if (
            "\uac00" <= char <= "\ud7a3"
            or "\u1100" <= char <= "\u11ff"
            or "\u3130" <= char <= "\u318f"
        ):
            hangul += 1
        elif char.isascii() and char.isalpha():
            latin += 1
    letters = hangul + latin
    if not letters:
        return ""
    return "ko" if hangul >= HANGUL_SHARE * letters else "latin"
