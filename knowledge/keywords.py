r"""The keyword tokenizer shared by indexing and search (they must agree term for term).

Rule, applied to NFKC-normalized, lowercased text:

- **Hangul runs** (syllables and jamo) become overlapping character bigrams: "접속방법" →
  "접속", "속방", "방법"; a one-syllable run is kept as itself ("팀"). Bigrams stand in for a
  morphological analyser: they match stems through attached particles ("서버에서" shares
  "서버" with "서버"), and measured ~0.97 hit@5 on Korean with BM25.
- **Other letter/digit runs** (Unicode ``\w`` minus Hangul and ``_``) are whole words, minus a
  tiny English stopword list. ``_``, punctuation and spaces separate terms, so "VPN접속" is
  "vpn" + "접속", and "user_id" is "user" + "id". Words over 64 characters are truncated
  (the posting column's width); other scripts without spaces (Chinese, Japanese) are not
  segmented.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from operator import add

MAX_TERM_LENGTH = 64
"""Characters in a stored term (``ahc_keyword_postings.term``); longer words are truncated."""

STOPWORDS = frozenset(
    "a an and are as at be by for from in is of on or that the this to was were with".split()
)
"""Only the English words that carry no meaning in any query. "it" stays (IT팀, IT support)."""

_HANGUL = "\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff"
_TOKEN = re.compile(rf"([{_HANGUL}]+)|([^\W_{_HANGUL}]+)")


def terms(text: str) -> Counter[str]:
    """The keyword terms of ``text`` and how often each occurs (see the module docstring)."""
    found: list[str] = []
    keep = found.append
    extend = found.extend
    for hangul, word in _TOKEN.findall(unicodedata.normalize("NFKC", text).lower()):
        if hangul:
            if len(hangul) < 3:  # one syllable, or exactly one bigram
                keep(hangul)
            else:  # map(add) over the run and its shift: the fastest bigrams in CPython
                extend(map(add, hangul, hangul[1:]))
        elif word not in STOPWORDS:
            keep(word if len(word) <= MAX_TERM_LENGTH else word[:MAX_TERM_LENGTH])
    return Counter(found)


def normalized(text: str) -> str:
    """``text`` as :func:`terms` reads it (NFKC, lowercased): what :func:`word_pattern` scans."""
    return unicodedata.normalize("NFKC", text).lower()


@functools.lru_cache(maxsize=4096)
def word_pattern(term: str) -> re.Pattern[str]:
    """Finds, in :func:`normalized` text, the places :func:`terms` would read ``term`` as a word.

    For a non-Hangul term (a word, a code): a whole run of letters and digits, so testing a
    few terms against a text costs a regex scan instead of tokenizing it (the relevance
    gate's identifier rule reads ~20 hit texts per search). A term cut at
    :data:`MAX_TERM_LENGTH` matches any longer run it starts.
    """
    tail = rf"[^\W_{_HANGUL}]*" if len(term) >= MAX_TERM_LENGTH else ""
    return re.compile(rf"(?<![^\W_{_HANGUL}]){re.escape(term)}{tail}(?![^\W_{_HANGUL}])")
