"""The keyword index's tables and reserved counters, shared by its writers and readers."""

from __future__ import annotations

from db.base import Base
from db.models import KeywordChunk, KeywordLog, KeywordPosting, KeywordSegment, KeywordTerm

K1 = 1.2
B = 0.75

CHUNKS_TERM = "#chunks"
"""Reserved row of ``ahc_keyword_terms``: the collection's indexed chunks (BM25's N)."""

NEXT_TERM = "#next"
"""Reserved row of ``ahc_keyword_terms``: chunk numbers handed out so far (never back)."""

TOKENS_TERM = "#tokens"
"""Reserved row of ``ahc_keyword_terms``: the sum of their lengths (N * avgdl)."""

VERSION_TERM = "#version"
"""Reserved row of ``ahc_keyword_terms``: bumped by every write (cached postings' validity)."""

RESERVED = (CHUNKS_TERM, NEXT_TERM, TOKENS_TERM, VERSION_TERM)
"""The reserved rows, in lock order; ``terms()`` never yields ``#``."""

MONOTONIC = (NEXT_TERM, VERSION_TERM)
"""Reserved counters that only grow (kept when a collection empties)."""

IDS_BATCH = 500
"""Ids per ``IN (...)`` list: under every backend's bound-parameter limit, still one plan."""

LOG_KEEP = 512
"""Writes per collection whose log entries are kept; a cache further behind starts over."""

# The tables as Core objects: the search path reads plain rows, never ORM instances.
POSTINGS = Base.metadata.tables[KeywordPosting.__tablename__]
SEGMENTS = Base.metadata.tables[KeywordSegment.__tablename__]
CHUNKS = Base.metadata.tables[KeywordChunk.__tablename__]
LOG = Base.metadata.tables[KeywordLog.__tablename__]
TERMS = Base.metadata.tables[KeywordTerm.__tablename__]
COLUMNS = ("collection_id", "term", "segment", "postings")
