"""The BM25 keyword index, kept in SQL next to the chunk rows, scored in memory.

Why SQL: postings are written and deleted in the caller's transaction, with the chunk rows,
so the index is always exactly the committed chunks, shared by every service instance, and
never half a document; the same statements run on SQLite and PostgreSQL.

Layout (revision 0013). Each chunk gets a **number** in its collection from the
``#next`` counter (never reused); a write of n chunks takes n consecutive numbers, a
**segment** named by its first number. ``ahc_keyword_postings``: one row per (collection,
term, segment) whose ``postings`` bytes pack the numbers, tfs and chunk lengths of the
term's postings in that segment (``knowledge.keyword_index.postings``, 8 bytes a posting).
``ahc_keyword_segments``: each segment's last number and its terms, so removal finds its
rows by primary key. ``ahc_keyword_chunks``: chunk id → number, segment, length.
``ahc_keyword_terms``: each term's df in the collection, plus the collection's chunk count,
token total, write count and next number under reserved terms. Writers change them by
increments (``INSERT ... ON CONFLICT DO UPDATE SET df = df + excluded.df``) in their own
transaction, so concurrent ingests and deletes add up exactly; removal subtracts what
``DELETE ... RETURNING`` says it actually deleted, so deleting the same chunk twice (or
concurrently) subtracts once. Every writer updates ``#chunks`` first, so on PostgreSQL
concurrent writers of one collection queue on that row (no deadlocks) while searches never
wait. Removing some chunks of a segment rewrites its rows under the segment row's lock.

Measured at 100k chunks (bench/results/keyword-2026-12-05b.txt): a row per posting cost
51 KB a chunk on PostgreSQL (tuple headers, index entries and the ids repeated ~180 times
a chunk) and 15 KB on SQLite; packed rows cost a few KB on both.

Search. Scoring is Okapi BM25 (k1 = 1.2, b = 0.75, idf = ln(1 + (N - df + 0.5) / (df +
0.5))), one point per distinct query term, summed with numpy over dense chunk numbers.
The postings of common terms are kept in this process (:class:`PostingCache`, a budget in
postings; :func:`warm` reads the most frequent terms in the background); rare terms are
read from SQL every time (a few rows). Every write bumps the collection's ``#version`` and
logs the numbers it added or removed (``ahc_keyword_log``); a search reads ``#version``
with the statistics, in one primary-key statement, and first brings the cache up to it
from the log (removed numbers masked, only the added segments' rows read): the cache never
serves anything but the committed index. Only the best numbers are mapped back to chunk
ids; ties are broken by number (the order chunks were indexed in), so results are
deterministic.

Modules: ``layout`` (tables, reserved counters), ``postings`` (the packed format and the
cache), ``writes`` (index, remove, rebuild), ``reads`` (a query's statistics and
postings at one version), ``scoring`` (BM25: MaxScore or dense), ``query`` (a search:
read, score, map the best numbers to ids), ``warming`` (filling the cache).
"""

from knowledge.keyword_index.layout import CHUNKS_TERM, K1, MONOTONIC, TOKENS_TERM, B
from knowledge.keyword_index.postings import PostingCache
from knowledge.keyword_index.query import KeywordHits, search
from knowledge.keyword_index.reads import CACHE
from knowledge.keyword_index.scoring import idf
from knowledge.keyword_index.warming import (
    configure,
    warm,
    warm_largest,
    warm_largest_soon,
    warm_soon,
)
from knowledge.keyword_index.writes import (
    index_chunks,
    rebuild_statistics,
    remove_chunks,
    remove_collection,
)

__all__ = [
    "CACHE",
    "CHUNKS_TERM",
    "K1",
    "MONOTONIC",
    "TOKENS_TERM",
    "B",
    "KeywordHits",
    "PostingCache",
    "configure",
    "idf",
    "index_chunks",
    "rebuild_statistics",
    "remove_chunks",
    "remove_collection",
    "search",
    "warm",
    "warm_largest",
    "warm_largest_soon",
    "warm_soon",
]
