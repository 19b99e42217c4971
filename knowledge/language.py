"""Which script a text is mostly written in: enough to tell Korean from English chunks.

Search uses it to take the language bias out of similarities: a multilingual embedder
scores any chunk in the query's own language higher than an equally relevant one in the
other language, which buries the answer to a cross-lingual question.
"""

from __future__ import annotations

import re

HANGUL_SHARE = 0.3
"""A text whose letters are at least this share Hangul is Korean (English words and
product names are common inside Korean text, rarely the reverse)."""


SAMPLE = 300
"""Characters :func:`script_of` looks at: a chunk's language shows in its first lines."""
_HANGUL = re.compile("[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LATIN = re.compile("[A-Za-z]")


def script_of(text: str) -> str:
    """``"ko"`` (mostly Hangul), ``"latin"`` (mostly ASCII letters) or ``""`` (neither).

    Judged on the first :data:`SAMPLE` characters, counted with regular expressions: a
    hybrid search asks it of each of its ~60 vector hits (0.2 ms in all, where a Python
    loop over whole chunks took 2 ms; bench/rag_quality.py).
    """
    sample = text[:SAMPLE]
    hangul = len(_HANGUL.findall(sample))
    letters = hangul + len(_LATIN.findall(sample))
    if not letters:
        return ""
    return "ko" if hangul >= HANGUL_SHARE * letters else "latin"
