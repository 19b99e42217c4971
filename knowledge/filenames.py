"""Uploaded filenames: keep the base name a client sent, never its path.

A filename comes from the multipart header as the client wrote it, and it is shown back in
listings and in the citations of every chunk; ``../../etc/x.txt`` or a terminal escape
must not travel that far.
"""

from __future__ import annotations

import unicodedata

FALLBACK = "upload"
MAX_LENGTH = 255
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def safe_filename(name: str | None) -> str:
    """The base name of ``name`` (after a slash or a backslash) without control characters.

    An empty result, ``.`` or ``..`` becomes :data:`FALLBACK`; a long name keeps its end
    (the extension the loaders sniff by) within :data:`MAX_LENGTH` characters.
    """
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(ch for ch in base if unicodedata.category(ch) not in _DROPPED).strip()
    if kept in ("", ".", ".."):
        return FALLBACK
    return kept if len(kept) <= MAX_LENGTH else kept[-MAX_LENGTH:]
