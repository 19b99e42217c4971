"""Org-scoped keys (checkpoint thread ids, limit counters) that no two owners can share.

Org, user and thread ids come from outside (ai-helper-back's tokens, clients) and may be
any string: ``rag:acme``, ``a/b``, ``한국``. Joined raw, ``"rag:" + "acme/t1"`` (org
``acme``'s knowledge thread) equals org ``rag:acme``'s chat thread ``t1``. Every key is
therefore built by :func:`scoped_key`, which percent-escapes the characters keys use as
structure — ``%`` (the escape itself), ``/`` and ``:`` — inside each part:

* a part but the last never holds a raw ``%``, ``/`` or ``:``, so the first separators of
  a key split it back into its parts, and a fixed prefix ending in ``:`` (``"rag:"``) can
  never make one key equal another (the unprefixed key has no ``:`` before its first
  separator; the prefixed one does);
* the last part escapes ``%`` and the separator and keeps ``:`` (``/``-keys), so thread
  ids with ``:``, which the API accepts, keep their keys;
* escaping is reversible, so distinct tuples of the same length give distinct keys.

Every other character stays as it is: an id without ``%``, ``/`` or ``:`` — ordinary ids
(``[A-Za-z0-9_.~-]``), Korean, e-mail addresses — gives the key it gave before keys were
escaped, byte for byte, so stored checkpoints and live counters stay valid without a data
migration. Only ids holding those characters (the ambiguous ones) get new keys.
"""

from __future__ import annotations

_STRUCTURE = {"%": "%25", "/": "%2F", ":": "%3A"}
_INNER = str.maketrans(_STRUCTURE)
_LAST = {sep: str.maketrans({"%": "%25", sep: _STRUCTURE[sep]}) for sep in ("/", ":")}


def scoped_key(*parts: str, sep: str = "/") -> str:
    """Join ``parts`` with ``sep`` (``/`` or ``:``), escaped so no two part tuples collide.

    Callers use a fixed number of parts per kind of key (and a constant first part or
    prefix to tell kinds apart), which is what makes the keys of all owners distinct.
    """
    if sep not in _LAST:
        raise ValueError(f"unsupported key separator {sep!r}")
    if not parts:
        raise ValueError("a key needs at least one part")
    *inner, last = parts
    return sep.join([*(part.translate(_INNER) for part in inner), last.translate(_LAST[sep])])
