"""The BM25 keyword index, kept in SQL next to the chunk rows, scored in memory.

Why SQL: postings are written and deleted in the caller's transaction, with the chunk rows,
so the index is always exactly the committed chunks, shared by every service instance, and
never half a document; the same statements run on SQLite and PostgreSQL.

Layout. ``ahc_keyword_postings``: one row per (collection, term, chunk) with the term's
frequency ``tf`` and the chunk's length (its token count, denormalized so scoring reads no
other table), clustered on that primary key and stored once. ``ahc_keyword_chunks``: one row
per indexed chunk, its length and its terms (the forward index): removal deletes exactly
those postings by primary key, so no second index by chunk is needed (it doubled the size).
``ahc_keyword_terms``: each term's df in the collection, plus the collection's chunk count,
token total and write count under reserved terms. Writers change them by increments
(``INSERT ... ON CONFLICT DO UPDATE SET df = df + excluded.df``) in their own transaction,
so concurrent ingests and deletes add up exactly; removal subtracts what ``DELETE ...
RETURNING`` says it actually deleted, so deleting the same chunk twice (or concurrently)
subtracts once. Every writer updates ``#chunks`` first, so on PostgreSQL concurrent writers
of one collection queue on that row (no deadlocks between them) while searches never wait.

Search. Scoring is Okapi BM25 (k1 = 1.2, b = 0.75, idf = ln(1 + (N - df + 0.5) / (df +
0.5))), one point per distinct query term. SQL engines rank a disjunction by scoring every
matching row, which is what made common words slow (measured at 100k chunks: SQLite FTS5's
``ORDER BY rank`` 450 ms p50; the SQL ``GROUP BY`` sum 35 ms p50 / 240 ms p95). So the
postings of a query's common terms are read once (one aggregated row per term) and kept in
this process as numpy arrays (:class:`PostingCache`); scoring is a vectorized sum over them
(a millisecond or two for 100k postings). Rare terms are read from SQL every time (a few
rows). Every write bumps the collection's ``#version`` and logs the chunks it added or
removed (``ahc_keyword_log``); a search reads ``#version`` with the statistics, in one
primary-key statement, and first brings the cache up to it from the log (removed chunks
masked, only the added chunks' postings read, by key): the cache never serves anything but
the committed index, and a write does not cost a re-read of the common terms.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Text, bindparam, cast, delete, func, insert, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from db.base import Base
from db.models import KeywordChunk, KeywordLog, KeywordPosting, KeywordTerm
from knowledge.keywords import terms

K1 = 1.2
B = 0.75

CHUNKS_TERM = "#chunks"
"""Reserved row of ``ahc_keyword_terms``: the collection's indexed chunks (BM25's N)."""

TOKENS_TERM = "#tokens"
"""Reserved row of ``ahc_keyword_terms``: the sum of their lengths (N * avgdl)."""

VERSION_TERM = "#version"
"""Reserved row of ``ahc_keyword_terms``: bumped by every write (cached postings' validity)."""

RESERVED = (CHUNKS_TERM, TOKENS_TERM, VERSION_TERM)
"""The reserved rows, in lock order; ``terms()`` never yields ``#``."""

_INSERT_BATCH = 5000
"""Rows per executemany: bounded memory, few round trips."""

_IDS_BATCH = 500
"""Ids per ``IN (...)`` list: under every backend's bound-parameter limit, still one plan."""

CACHE_MIN_DF = 256
"""Terms in at least this many chunks are kept in memory; rarer ones are cheap to re-read."""

LOG_KEEP = 512
"""Writes per collection whose log entries are kept; a cache further behind starts over."""

CACHE_POSTINGS = 30_000_000
"""Postings kept in memory per process (6 bytes each: ~180 MB), least recently used out."""

_posting = Base.metadata.tables[KeywordPosting.__tablename__]
_chunk = Base.metadata.tables[KeywordChunk.__tablename__]
_log = Base.metadata.tables[KeywordLog.__tablename__]
_term = Base.metadata.tables[KeywordTerm.__tablename__]
_COLUMNS = ("collection_id", "term", "chunk_id", "tf", "chunk_length")


def encode_terms(bag: Counter[str]) -> str:
    """A chunk's term bag as stored in ``ahc_keyword_chunks.terms`` (sorted, ``term[:tf]``)."""
    return " ".join(term if tf == 1 else f"{term}:{tf}" for term, tf in sorted(bag.items()))


def decode_terms(encoded: str) -> dict[str, int]:
    """The inverse of :func:`encode_terms`."""
    bag: dict[str, int] = {}
    for item in encoded.split():
        term, _, tf = item.partition(":")
        bag[term] = int(tf) if tf else 1
    return bag


async def index_chunks(
    session: AsyncSession, collection_id: str, chunks: Sequence[tuple[str, str]]
) -> dict[str, int]:
    """Write the postings of ``(chunk id, text)`` pairs; each chunk's token count.

    The caller stores the count in ``KnowledgeChunk.token_count`` and commits postings and
    chunk rows together. A chunk id must not be indexed twice (remove it first).
    """
    counts: dict[str, int] = {}
    by_term: defaultdict[str, list[tuple[str, int, int]]] = defaultdict(list)
    forward: list[dict[str, Any]] = []
    for chunk_id, text in chunks:
        bag = terms(text)
        length = bag.total()
        counts[chunk_id] = length
        forward.append(
            {
                "chunk_id": chunk_id,
                "collection_id": collection_id,
                "length": length,
                "terms": encode_terms(bag),
            }
        )
        for term, tf in bag.items():
            by_term[term].append((chunk_id, tf, length))
    if not counts:
        return counts
    df = Counter({term: len(postings) for term, postings in by_term.items()})
    df[CHUNKS_TERM] = len(counts)
    df[TOKENS_TERM] = sum(counts.values())
    df[VERSION_TERM] = 1
    version = await _add_counts(session, collection_id, df)  # first: the collection's lock
    await _log_write(session, collection_id, version, list(counts), added=True)
    connection = await session.connection()
    for start in range(0, len(forward), _INSERT_BATCH):
        await connection.execute(insert(_chunk), forward[start : start + _INSERT_BATCH])
    rows = [  # in primary-key order (see _insert)
        (collection_id, term, chunk_id, tf, length)
        for term in sorted(by_term)
        for chunk_id, tf, length in by_term[term]
    ]
    await _insert(session, rows)
    return counts


async def _insert(session: AsyncSession, rows: list[tuple[str, str, str, int, int]]) -> None:
    """Bulk-insert postings in the session's transaction.

    A chunk has ~100-500 distinct terms, so this is the cost of ingest. Rows come in primary
    key order (measured on SQLite at 100k chunks: a third less CPU than chunk order, as each
    leaf page is visited once). PostgreSQL gets ``COPY`` on the session's own psycopg
    connection (2-3x faster than executemany); SQLite a driver-level executemany of tuples
    (SQLAlchemy's per-row parameter processing cost as much as SQLite itself).
    """
    connection = await session.connection()
    columns = ", ".join(_COLUMNS)
    if connection.dialect.driver == "psycopg":
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        async with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {_posting.name} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                await copy.write_row(row)
        return
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(connection.dialect.paramstyle)
    if marker is None:  # another driver: SQLAlchemy's portable executemany
        for start in range(0, len(rows), _INSERT_BATCH):
            batch = rows[start : start + _INSERT_BATCH]
            await connection.execute(
                insert(_posting), [dict(zip(_COLUMNS, row, strict=True)) for row in batch]
            )
        return
    statement = f"INSERT INTO {_posting.name} ({columns}) VALUES ({', '.join([marker] * 5)})"
    for start in range(0, len(rows), _INSERT_BATCH):
        await connection.exec_driver_sql(statement, rows[start : start + _INSERT_BATCH])


async def _log_write(
    session: AsyncSession, collection_id: str, version: int, chunk_ids: list[str], *, added: bool
) -> None:
    """Log a write's chunks at its version; drop entries that fell out of the window."""
    connection = await session.connection()
    rows = [
        {"collection_id": collection_id, "version": version, "chunk_id": c, "added": added}
        for c in chunk_ids
    ]
    for start in range(0, len(rows), _INSERT_BATCH):
        await connection.execute(insert(_log), rows[start : start + _INSERT_BATCH])
    if version % 16 == 0:  # prune now and then: one range delete on the primary key
        await connection.execute(
            delete(_log).where(
                _log.c.collection_id == collection_id, _log.c.version <= version - LOG_KEEP
            )
        )


async def _add_counts(session: AsyncSession, collection_id: str, deltas: Counter[str]) -> int:
    """Add ``deltas`` to the collection's counters (upserts, reserved rows first).

    Sorted, so every writer locks rows in the same order, starting with ``#chunks``. The
    ``RETURNING`` makes SQLAlchemy batch the rows into multi-row statements. Returns the
    collection's new ``#version`` (0 unless ``deltas`` bumps it).
    """
    connection = await session.connection()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_term)
    statement = statement.on_conflict_do_update(
        index_elements=[_term.c.collection_id, _term.c.term],
        set_={"df": _term.c.df + statement.excluded.df},
    ).returning(_term.c.term)
    order = [t for t in RESERVED if t in deltas] + sorted(t for t in deltas if t not in RESERVED)
    rows = [{"collection_id": collection_id, "term": t, "df": deltas[t]} for t in order]
    statement = statement.returning(_term.c.df)
    version = 0
    for start in range(0, len(rows), _INSERT_BATCH):
        batch = rows[start : start + _INSERT_BATCH]
        result = await connection.execute(statement, batch)
        for term, value in result.all():
            if term == VERSION_TERM:
                version = int(value)
    return version


_delete_postings = delete(_posting).where(
    _posting.c.collection_id == bindparam("collection_id"),
    _posting.c.chunk_id == bindparam("chunk_id"),
    _posting.c.term.in_(bindparam("terms", expanding=True)),
)


async def remove_chunks(session: AsyncSession, chunk_ids: Sequence[str]) -> None:
    """Delete these chunks' index entries (in the caller's transaction, with the chunks).

    Unknown or already removed ids are ignored; the counters lose exactly what was deleted:
    the chunk's forward row is deleted first (``RETURNING`` its terms), so of two concurrent
    removals only one sees it, and only that one deletes and subtracts its postings.
    """
    ids = list(dict.fromkeys(chunk_ids))
    removed: defaultdict[str, Counter[str]] = defaultdict(Counter)
    gone: defaultdict[str, list[str]] = defaultdict(list)
    for start in range(0, len(ids), _IDS_BATCH):
        result = await session.execute(
            delete(_chunk)
            .where(_chunk.c.chunk_id.in_(ids[start : start + _IDS_BATCH]))
            .returning(_chunk.c.chunk_id, _chunk.c.collection_id, _chunk.c.length, _chunk.c.terms)
        )
        for chunk_id, collection_id, length, encoded in result.all():
            bag = decode_terms(encoded)
            gone[collection_id].append(chunk_id)
            deltas = removed[collection_id]
            deltas[CHUNKS_TERM] -= 1
            deltas[TOKENS_TERM] -= length
            deltas.update({term: -1 for term in bag})
            if bag:
                await session.execute(
                    _delete_postings,
                    {"collection_id": collection_id, "chunk_id": chunk_id, "terms": list(bag)},
                )
    for collection_id, deltas in removed.items():
        deltas[VERSION_TERM] = 1
        version = await _add_counts(session, collection_id, deltas)
        await _log_write(session, collection_id, version, gone[collection_id], added=False)
        touched = [t for t in deltas if t != VERSION_TERM]  # the write count never goes back
        for start in range(0, len(touched), _IDS_BATCH):
            await session.execute(
                delete(_term).where(
                    _term.c.collection_id == collection_id,
                    _term.c.term.in_(touched[start : start + _IDS_BATCH]),
                    _term.c.df <= 0,
                )
            )


async def remove_collection(session: AsyncSession, collection_id: str) -> None:
    """Delete a collection's whole index (chunk rows go by cascade; the index has no FK)."""
    await session.execute(delete(_posting).where(_posting.c.collection_id == collection_id))
    await session.execute(delete(_chunk).where(_chunk.c.collection_id == collection_id))
    await session.execute(delete(_log).where(_log.c.collection_id == collection_id))
    await session.execute(delete(_term).where(_term.c.collection_id == collection_id))


async def rebuild_statistics(session: AsyncSession, collection_id: str) -> None:
    """Recompute the collection's counters from its index rows (repair; O(postings)).

    Only needed if postings were ever written around this module; the counters are exact
    otherwise. Holds the collection's ``#chunks`` row, so writers wait for it; the write
    count goes on (never back), so no process keeps postings cached from before.
    """
    await _add_counts(session, collection_id, Counter({CHUNKS_TERM: 0}))  # lock first
    version = await session.scalar(
        select(_term.c.df).where(
            _term.c.collection_id == collection_id, _term.c.term == VERSION_TERM
        )
    )
    await session.execute(delete(_term).where(_term.c.collection_id == collection_id))
    columns = [_term.c.collection_id, _term.c.term, _term.c.df]
    await session.execute(
        insert(_term).from_select(
            columns,
            select(_posting.c.collection_id, _posting.c.term, func.count())
            .where(_posting.c.collection_id == collection_id)
            .group_by(_posting.c.collection_id, _posting.c.term),
        )
    )
    mine = _chunk.c.collection_id == collection_id
    for term, value in (
        (CHUNKS_TERM, func.count()),
        (TOKENS_TERM, func.coalesce(func.sum(_chunk.c.length), 0)),
    ):
        await session.execute(
            insert(_term).from_select(
                columns,
                select(literal(collection_id), literal(term), value)
                .where(mine)
                .having(func.count() > 0),
            )
        )
    await _add_counts(session, collection_id, Counter({VERSION_TERM: (version or 0) + 1}))


@dataclass(frozen=True)
class _Stats:
    """What BM25 needs to know about the collection for one query."""

    chunks: int
    tokens: int
    average_length: float
    version: int
    df: dict[str, int]


async def _stats(session: AsyncSession, collection_id: str, wanted: Sequence[str]) -> _Stats:
    """N, total length, write count and each term's df: primary-key lookups, one statement."""
    result = await session.execute(
        select(_term.c.term, _term.c.df).where(
            _term.c.collection_id == collection_id,
            _term.c.term.in_([*RESERVED, *wanted]),
        )
    )
    counters = {term: int(df) for term, df in result}
    chunks = counters.pop(CHUNKS_TERM, 0)
    total = counters.pop(TOKENS_TERM, 0)
    version = counters.pop(VERSION_TERM, 0)
    return _Stats(
        chunks=chunks,
        tokens=total,
        average_length=total / chunks if chunks > 0 else 0.0,
        version=version,
        df=counters,
    )


def idf(chunks: int, df: int) -> float:
    """BM25's idf: ln(1 + (N - df + 0.5) / (df + 0.5)), never negative."""
    return math.log(1.0 + (chunks - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class _Postings:
    """One term's postings as of ``version``: dense chunk numbers (see ``_Collection``)."""

    version: int
    slots: np.ndarray[Any, np.dtype[np.int32]]
    tf: np.ndarray[Any, np.dtype[np.float32]]
    length: np.ndarray[Any, np.dtype[np.float32]]

    @property
    def size(self) -> int:
        return len(self.slots)

    def extended(self, version: int, more: _Postings) -> _Postings:
        """These postings plus ``more`` (the chunks added since), as of ``version``."""
        return _Postings(
            version,
            np.concatenate([self.slots, more.slots]),
            np.concatenate([self.tf, more.tf]),
            np.concatenate([self.length, more.length]),
        )


@dataclass
class _Collection:
    """One collection's cached postings, its chunk numbering and the removed chunks.

    ``version`` is the write the numbering is current with: every chunk removed up to it is
    marked ``dead`` (its postings stay in the arrays, masked), every chunk added up to it is
    in ``added`` with its version, so a term cached at an older version reads just those.
    A chunk added again gets a new number (the old one stays dead).
    """

    version: int
    slot_of: dict[str, int] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    dead: set[int] = field(default_factory=set)
    added: list[tuple[int, int]] = field(default_factory=list)
    """(version, slot) of the chunks added since the entry was made, oldest first."""
    terms: dict[str, _Postings] = field(default_factory=dict)

    def slots(self, chunk_ids: Iterable[str]) -> np.ndarray[Any, np.dtype[np.int32]]:
        """Dense numbers of these chunk ids, numbering new ones."""
        slot_of, ids = self.slot_of, self.ids
        out: list[int] = []
        append = out.append
        for chunk_id in chunk_ids:
            slot = slot_of.get(chunk_id)
            if slot is None:
                slot = slot_of[chunk_id] = len(ids)
                ids.append(chunk_id)
            append(slot)
        return np.asarray(out, dtype=np.int32)

    def apply(self, entries: Sequence[tuple[int, str, bool]]) -> None:
        """Catch up with logged writes ``(version, chunk id, added)``, oldest first."""
        for version, chunk_id, added in entries:
            if version <= self.version:
                continue  # applied already (by a concurrent search in this process)
            slot = self.slot_of.pop(chunk_id, None)
            if slot is not None:
                self.dead.add(slot)
            if added:
                (slot,) = self.slots([chunk_id])
                self.added.append((version, int(slot)))
        self.version = max(self.version, entries[-1][0]) if entries else self.version

    def added_since(self, version: int) -> list[str]:
        """Ids of the live chunks added after ``version``."""
        out = [self.ids[slot] for v, slot in reversed(self.added) if v > version]
        return [chunk_id for chunk_id in out if chunk_id in self.slot_of]

    @property
    def stale(self) -> bool:
        """Too many dead numbers: better start over than mask them."""
        return len(self.dead) > max(1000, len(self.ids) // 5) or len(self.added) > 100_000


class PostingCache:
    """Per-process postings of common terms, per collection, least recently used out.

    An entry is brought up to the version a query read (in the same statement as its
    statistics) before use, so it always holds exactly the postings SQL would return.
    """

    def __init__(self, budget: int = CACHE_POSTINGS) -> None:
        self._budget = budget
        self._size = 0
        self._collections: dict[str, _Collection] = {}
        self._lru: OrderedDict[tuple[str, str], int] = OrderedDict()

    def collection(self, collection_id: str) -> _Collection | None:
        """The collection's entry, if any."""
        return self._collections.get(collection_id)

    def start(self, collection_id: str, version: int) -> _Collection:
        """A fresh entry for the collection at ``version`` (dropping the old one)."""
        self.drop(collection_id)
        entry = self._collections[collection_id] = _Collection(version)
        return entry

    def drop(self, collection_id: str) -> None:
        """Forget a collection's entry."""
        entry = self._collections.pop(collection_id, None)
        if entry is not None:
            for term in entry.terms:
                self._size -= self._lru.pop((collection_id, term), 0)

    def get(self, collection_id: str, entry: _Collection, term: str) -> _Postings | None:
        """A term's cached postings (marked as just used), or None."""
        found = entry.terms.get(term)
        if found is not None:
            self._lru.move_to_end((collection_id, term))
        return found

    def put(self, collection_id: str, entry: _Collection, term: str, postings: _Postings) -> None:
        """Keep a term's postings, evicting the least recently used over the budget."""
        if postings.size > self._budget or self._collections.get(collection_id) is not entry:
            return
        current = entry.terms.get(term)
        if current is not None and current.version >= postings.version:
            return  # a concurrent search of this process got there first
        self._size -= self._lru.pop((collection_id, term), 0)
        entry.terms[term] = postings
        self._lru[(collection_id, term)] = postings.size
        self._size += postings.size
        while self._size > self._budget:
            (owner, old), size = self._lru.popitem(last=False)
            self._size -= size
            holder = self._collections.get(owner)
            if holder is not None:
                holder.terms.pop(old, None)
                if not holder.terms:  # its numbering goes too: memory is bounded
                    del self._collections[owner]

    def clear(self) -> None:
        """Forget everything (tests; a process that wants its memory back)."""
        self._collections.clear()
        self._lru.clear()
        self._size = 0


CACHE = PostingCache()
"""This process's cache (empty until the first search)."""


async def _entry(session: AsyncSession, collection_id: str, version: int) -> _Collection:
    """The collection's cache entry brought up to ``version`` (or a private one if behind).

    Catching up reads the log since the entry's version (one range of the primary key).
    """
    entry = CACHE.collection(collection_id)
    if entry is None or entry.stale or version - entry.version > LOG_KEEP // 2:
        return CACHE.start(collection_id, version)
    if version < entry.version:  # this query's snapshot predates the cache: use neither
        return _Collection(version)
    if version > entry.version:
        since = entry.version
        result = await session.execute(
            select(_log.c.version, _log.c.chunk_id, _log.c.added)
            .where(
                _log.c.collection_id == collection_id,
                _log.c.version > since,
                _log.c.version <= version,
            )
            .order_by(_log.c.version, _log.c.added)  # a chunk removed, then added again
        )
        entry.apply([(int(v), c, bool(a)) for v, c, a in result.all()])
    return entry


def _to_postings(version: int, entry: _Collection, rows: Sequence[Any]) -> _Postings:
    return _Postings(
        version=version,
        slots=entry.slots(row[1] for row in rows),
        tf=np.fromiter((row[2] for row in rows), np.float32, len(rows)),
        length=np.fromiter((row[3] for row in rows), np.float32, len(rows)),
    )


async def _read(
    session: AsyncSession, collection_id: str, wanted: Sequence[str], within: Sequence[str] = ()
) -> defaultdict[str, list[Any]]:
    """Postings rows (term, chunk id, tf, dl) of ``wanted`` terms (of ``within`` chunks)."""
    query = select(
        _posting.c.term, _posting.c.chunk_id, _posting.c.tf, _posting.c.chunk_length
    ).where(_posting.c.collection_id == collection_id, _posting.c.term.in_(wanted))
    if within:
        query = query.where(_posting.c.chunk_id.in_(within))
    grouped: defaultdict[str, list[Any]] = defaultdict(list)
    for row in (await session.execute(query)).all():
        grouped[row[0]].append(row)
    return grouped


_SEPARATOR = "\x1f"
"""Between chunk ids in an aggregated read (ids are printable: never in one)."""


async def _read_whole(
    session: AsyncSession, collection_id: str, wanted: Sequence[str]
) -> dict[str, tuple[list[str], np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    """Every posting of ``wanted`` terms: (chunk ids, tf, dl) per term.

    One aggregated row per term (the ids, tfs and lengths concatenated by the database and
    split in C here): a common term has ~100k postings, and building a Python row for each
    cost several times more. Every aggregate of a group sees its rows in the same order.
    """
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        ids = func.string_agg(_posting.c.chunk_id, literal(_SEPARATOR))
        tfs = func.string_agg(cast(_posting.c.tf, Text), literal(","))
        lengths = func.string_agg(cast(_posting.c.chunk_length, Text), literal(","))
    else:
        ids = func.group_concat(_posting.c.chunk_id, literal(_SEPARATOR))
        tfs = func.group_concat(_posting.c.tf, literal(","))
        lengths = func.group_concat(_posting.c.chunk_length, literal(","))
    result = await connection.execute(
        select(_posting.c.term, ids, tfs, lengths)
        .where(_posting.c.collection_id == collection_id, _posting.c.term.in_(wanted))
        .group_by(_posting.c.term)
    )
    found: dict[str, tuple[list[str], np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    for term, joined, tf_text, length_text in result.all():
        found[term] = (
            joined.split(_SEPARATOR),
            np.fromstring(tf_text, dtype=np.float32, sep=","),
            np.fromstring(length_text, dtype=np.float32, sep=","),
        )
    return found


async def _postings(
    session: AsyncSession, collection_id: str, stats: _Stats, wanted: Sequence[str]
) -> tuple[_Collection, dict[str, _Postings]]:
    """The postings of ``wanted`` terms at the query's version: memory first, then SQL.

    A cached term behind the version reads only the postings of the chunks added since
    (primary-key lookups); the others are read whole, and kept if common.
    """
    version = stats.version
    entry = await _entry(session, collection_id, version)
    found: dict[str, _Postings] = {}
    missing: list[str] = []
    behind: dict[str, _Postings] = {}
    for term in wanted:
        cached = CACHE.get(collection_id, entry, term)
        if cached is None:
            missing.append(term)
        elif cached.version >= version:
            found[term] = cached
        else:
            behind[term] = cached
    if behind:
        oldest = min(p.version for p in behind.values())
        fresh = entry.added_since(oldest)
        if len(fresh) > 4 * _IDS_BATCH:
            missing.extend(behind)  # many new chunks: read the terms whole
        else:
            rows: defaultdict[str, list[Any]] = defaultdict(list)
            for start in range(0, len(fresh), _IDS_BATCH):
                batch = fresh[start : start + _IDS_BATCH]
                for term, term_rows in (
                    await _read(session, collection_id, list(behind), batch)
                ).items():
                    rows[term].extend(term_rows)
            for term, cached in behind.items():
                newer = set(entry.added_since(cached.version))
                mine = [row for row in rows.get(term, ()) if row[1] in newer]
                found[term] = cached.extended(version, _to_postings(version, entry, mine))
                CACHE.put(collection_id, entry, term, found[term])
    if missing:
        for term, (ids, tf, length) in (await _read_whole(session, collection_id, missing)).items():
            found[term] = _Postings(version, entry.slots(ids), tf, length)
            if len(ids) >= CACHE_MIN_DF:
                CACHE.put(collection_id, entry, term, found[term])
    return entry, found


async def search(
    session: AsyncSession,
    collection_id: str,
    query: str,
    *,
    limit: int,
    allowed: Collection[str] | None = None,
) -> list[tuple[str, float]]:
    """The ``limit`` best chunks for ``query`` by BM25, as (chunk id, score), best first.

    ``allowed`` (the chunk ids that pass the metadata filters) restricts the results, not
    the statistics: N, avgdl and df are always the whole collection's, so a filter never
    changes a chunk's score. Ties are broken by chunk id, so results are deterministic.
    """
    wanted = sorted(terms(query))
    if not wanted or limit <= 0 or (allowed is not None and not allowed):
        return []
    stats = await _stats(session, collection_id, wanted)
    present = [term for term in wanted if stats.df.get(term, 0) > 0]
    if not present or stats.chunks <= 0:
        return []
    entry, postings = await _postings(session, collection_id, stats, present)
    if not postings:
        return []
    slope = K1 * B / stats.average_length if stats.average_length > 0 else 0.0
    scores = np.zeros(len(entry.ids), dtype=np.float64)
    for term, found in postings.items():
        weight = idf(stats.chunks, stats.df[term]) * (K1 + 1)
        tf = found.tf.astype(np.float64)
        share = weight * tf / (tf + K1 * (1 - B) + slope * found.length.astype(np.float64))
        scores += np.bincount(found.slots, weights=share, minlength=len(scores))
    if entry.dead:
        scores[np.fromiter(entry.dead, np.int64, len(entry.dead))] = 0.0
    matched = np.flatnonzero(scores > 0)
    if allowed is not None:
        allowed_slots = [entry.slot_of[i] for i in allowed if i in entry.slot_of]
        keep = np.zeros(len(scores), dtype=bool)
        keep[np.asarray(allowed_slots, dtype=np.int64)] = True
        matched = matched[keep[matched]]
    return _best(entry.ids, scores, matched, limit)


def _best(
    ids: list[str], scores: np.ndarray[Any, Any], matched: np.ndarray[Any, Any], limit: int
) -> list[tuple[str, float]]:
    """The ``limit`` best of ``matched`` by score, ties by chunk id."""
    if len(matched) > limit:
        values = scores[matched]
        cutoff = np.partition(values, len(values) - limit)[len(values) - limit]
        matched = matched[values >= cutoff]  # ties at the cutoff: all kept, sorted below
    hits = [(ids[slot], float(scores[slot])) for slot in matched.tolist()]
    hits.sort(key=lambda hit: (-hit[1], hit[0]))
    return hits[:limit]
