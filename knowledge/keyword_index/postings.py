"""Packed BM25 postings and the per-process cache of common terms' postings.

A posting list is three parallel arrays: chunk numbers (uint32), the term's frequency in
each chunk and each chunk's length (uint16 each, saturating). Stored as their bytes one
after the other (8 bytes a posting, little-endian) and decoded with ``np.frombuffer``
without a copy, so reading a common term's 100k postings is a few hundred rows of bytes,
not 100k rows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

POSTING_BYTES = 8
"""Per posting: number (4), tf (2), length (2)."""

_U16 = 65_535

NumberArray = np.ndarray[Any, np.dtype[np.uint32]]
SmallArray = np.ndarray[Any, np.dtype[np.uint16]]


def pack(
    numbers: Sequence[int] | np.ndarray[Any, Any],
    tf: Sequence[int] | np.ndarray[Any, Any],
    length: Sequence[int] | np.ndarray[Any, Any],
) -> bytes:
    """One row's bytes: numbers, then tf, then lengths (tf and length saturate at 65,535)."""
    return b"".join(
        (
            np.asarray(numbers, dtype="<u4").tobytes(),
            np.minimum(np.asarray(tf, dtype=np.int64), _U16).astype("<u2").tobytes(),
            np.minimum(np.asarray(length, dtype=np.int64), _U16).astype("<u2").tobytes(),
        )
    )


def unpack(data: bytes) -> tuple[NumberArray, SmallArray, SmallArray]:
    """The inverse of :func:`pack` (views over ``data``, no copy)."""
    n = len(data) // POSTING_BYTES
    numbers = np.frombuffer(data, dtype="<u4", count=n)
    tf = np.frombuffer(data, dtype="<u2", count=n, offset=4 * n)
    length = np.frombuffer(data, dtype="<u2", count=n, offset=6 * n)
    return numbers, tf, length


def count(data: bytes) -> int:
    """Postings in a packed row."""
    return len(data) // POSTING_BYTES


@dataclass(frozen=True)
class Postings:
    """One term's postings as of ``version`` (sorted by number, each at most once)."""

    version: int
    numbers: NumberArray
    tf: SmallArray
    length: SmallArray

    @property
    def size(self) -> int:
        """Postings held."""
        return len(self.numbers)

    @classmethod
    def of_rows(cls, version: int, rows: Iterable[bytes]) -> Postings:
        """The postings of packed rows given in segment order, concatenated (so by number)."""
        parts = [unpack(data) for data in rows]
        if not parts:
            empty = np.zeros(0, dtype=np.uint16)
            return cls(version, np.zeros(0, dtype=np.uint32), empty, empty)
        if len(parts) == 1:
            return cls(version, *parts[0])
        return cls(
            version,
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )

    def extended(
        self, version: int, more: Postings, segments: Sequence[tuple[int, int]]
    ) -> Postings:
        """These postings plus ``more`` (read from the added ``segments``), as of ``version``.

        Postings already held from those segments (a read that saw a write before its
        version was known) are replaced, never doubled.
        """
        keep = np.ones(self.size, dtype=bool)
        for first, last in segments:
            keep &= (self.numbers < first) | (self.numbers > last)
        if keep.all():
            keep_numbers, keep_tf, keep_length = self.numbers, self.tf, self.length
        else:
            keep_numbers, keep_tf, keep_length = (
                self.numbers[keep],
                self.tf[keep],
                self.length[keep],
            )
        numbers = np.concatenate([keep_numbers, more.numbers])
        tf = np.concatenate([keep_tf, more.tf])
        length = np.concatenate([keep_length, more.length])
        if len(keep_numbers) and more.size and more.numbers[0] < keep_numbers[-1]:
            order = np.argsort(numbers, kind="stable")  # an older segment re-read: re-sort
            numbers, tf, length = numbers[order], tf[order], length[order]
        return Postings(version, numbers, tf, length)


@dataclass
class CachedCollection:
    """One collection's cached postings and the writes applied since they were read.

    ``version`` is the write the entry is current with: every number removed up to it is
    in ``dead`` (its postings stay in the arrays, masked); every segment added up to it is
    in ``added`` with its version, so a term cached at an older version reads just those
    segments' rows.
    """

    version: int
    dead: set[int] = field(default_factory=set)
    added: list[tuple[int, int, int]] = field(default_factory=list)
    """(version, first, last) of the segments added since the entry was made, oldest first."""
    terms: dict[str, Postings] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    """Chunk ids of numbers seen in results (a number never changes its chunk)."""
    _dead_array: np.ndarray[Any, np.dtype[np.int64]] | None = None

    def apply(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """Catch up with logged writes ``(version, first, last, added)``, oldest first."""
        for version, first, last, added in entries:
            if version <= self.version:
                continue  # applied already (by a concurrent search in this process)
            if added:
                self.added.append((version, first, last))
            else:
                self.dead.update(range(first, last + 1))
                self._dead_array = None
        if entries:
            self.version = max(self.version, entries[-1][0])

    def added_since(self, version: int) -> list[tuple[int, int]]:
        """(first, last) of the segments added after ``version``."""
        return [(first, last) for v, first, last in self.added if v > version]

    def dead_numbers(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """``dead`` as an array (kept until the next removal)."""
        if self._dead_array is None:
            self._dead_array = np.fromiter(self.dead, np.int64, len(self.dead))
        return self._dead_array

    @property
    def stale(self) -> bool:
        """Too many dead numbers or added segments: better start over than patch."""
        return len(self.dead) > 50_000 or len(self.added) > 10_000


class PostingCache:
    """Per-process postings of common terms, per collection, least recently used out.

    An entry is brought up to the version a query read (in the same statement as its
    statistics) before use, so it always holds exactly the postings SQL would return.
    ``budget`` counts postings (8 bytes each in memory).
    """

    def __init__(self, budget: int = 20_000_000) -> None:
        self.budget = budget
        self._size = 0
        self._collections: dict[str, CachedCollection] = {}
        self._lru: OrderedDict[tuple[str, str], int] = OrderedDict()

    @property
    def size(self) -> int:
        """Postings held."""
        return self._size

    def collection(self, collection_id: str) -> CachedCollection | None:
        """The collection's entry, if any."""
        return self._collections.get(collection_id)

    def start(self, collection_id: str, version: int) -> CachedCollection:
        """A fresh entry for the collection at ``version`` (dropping the old one)."""
        self.drop(collection_id)
        entry = self._collections[collection_id] = CachedCollection(version)
        return entry

    def drop(self, collection_id: str) -> None:
        """Forget a collection's entry."""
        entry = self._collections.pop(collection_id, None)
        if entry is not None:
            for term in entry.terms:
                self._size -= self._lru.pop((collection_id, term), 0)

    def get(self, collection_id: str, entry: CachedCollection, term: str) -> Postings | None:
        """A term's cached postings (marked as just used), or None."""
        found = entry.terms.get(term)
        if found is not None:
            self._lru.move_to_end((collection_id, term))
        return found

    def put(
        self, collection_id: str, entry: CachedCollection, term: str, postings: Postings
    ) -> bool:
        """Keep a term's postings, evicting the least recently used over the budget."""
        if postings.size > self.budget or self._collections.get(collection_id) is not entry:
            return False
        current = entry.terms.get(term)
        if current is not None and current.version >= postings.version:
            return False  # a concurrent search of this process got there first
        self._size -= self._lru.pop((collection_id, term), 0)
        entry.terms[term] = postings
        self._lru[(collection_id, term)] = postings.size
        self._size += postings.size
        while self._size > self.budget:
            (owner, old), size = self._lru.popitem(last=False)
            self._size -= size
            holder = self._collections.get(owner)
            if holder is not None:
                holder.terms.pop(old, None)
                if not holder.terms:  # its log state goes too: memory is bounded
                    del self._collections[owner]
        return True

    def clear(self) -> None:
        """Forget everything (tests; a process that wants its memory back)."""
        self._collections.clear()
        self._lru.clear()
        self._size = 0
