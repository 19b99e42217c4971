"""Keyword index: chunk numbers and packed posting rows (one per term and write).

Before, every posting was a row (collection id, term, chunk id, tf, length): 51 KB a chunk
on PostgreSQL, 15 KB on SQLite at 100k chunks, mostly row and index overhead. Now a chunk
has a number in its collection (``ahc_keyword_numbers``), the chunks of one write are a
segment (``ahc_keyword_segments``) and each (term, segment) is one row of packed bytes
(``ahc_keyword_segment_postings``: uint32 numbers, uint16 tfs, uint16 lengths).

Built here from the forward rows of revision 0011 (each chunk's term bag and length), one
segment per document (in chunk order), so upgraded indexes stay exact without
re-tokenizing anything. The write log starts empty, and every collection's ``#version``
moves on (processes holding postings from before start over). Downgrade rebuilds the
0011 layout from the packed rows.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 500
_U16 = 65_535


def _pack(numbers: list[int], tfs: list[int], lengths: list[int]) -> bytes:
    """As ``knowledge.keyword_index.postings.pack`` (copied: migrations never import the app)."""
    return b"".join(
        (
            np.asarray(numbers, dtype="<u4").tobytes(),
            np.minimum(np.asarray(tfs, dtype=np.int64), _U16).astype("<u2").tobytes(),
            np.minimum(np.asarray(lengths, dtype=np.int64), _U16).astype("<u2").tobytes(),
        )
    )


def _decode(encoded: str) -> dict[str, int]:
    """A 0011 forward row's ``terms``: ``term`` or ``term:tf``, space-separated."""
    bag: dict[str, int] = {}
    for item in encoded.split():
        term, _, tf = item.partition(":")
        bag[term] = int(tf) if tf else 1
    return bag


def _create_new() -> None:
    op.create_table(
        "ahc_keyword_segment_postings",
        sa.Column("collection_id", sa.String(length=36), nullable=False),
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("postings", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(
            "collection_id", "term", "segment", name=op.f("pk_ahc_keyword_segment_postings")
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "ahc_keyword_segments",
        sa.Column("collection_id", sa.String(length=36), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", "segment", name=op.f("pk_ahc_keyword_segments")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "ahc_keyword_numbers",
        sa.Column("chunk_id", sa.String(length=80), nullable=False),
        sa.Column("collection_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("chunk_id", name=op.f("pk_ahc_keyword_numbers")),
    )
    op.create_index(
        "ux_ahc_keyword_numbers_number",
        "ahc_keyword_numbers",
        ["collection_id", "number"],
        unique=True,
    )


def _create_log(*, numbers: bool) -> None:
    key = ["first"] if numbers else ["chunk_id"]
    columns = (
        [
            sa.Column("first", sa.Integer(), nullable=False),
            sa.Column("last", sa.Integer(), nullable=False),
        ]
        if numbers
        else [sa.Column("chunk_id", sa.String(length=80), nullable=False)]
    )
    op.create_table(
        "ahc_keyword_log",
        sa.Column("collection_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        *columns,
        sa.Column("added", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", "version", *key, name=op.f("pk_ahc_keyword_log")),
        sqlite_with_rowid=False,
    )


def _bump_versions(conn: sa.Connection) -> None:
    """Every collection's write count moves on, so no process keeps postings from before."""
    conn.execute(sa.text("UPDATE ahc_keyword_terms SET df = df + 1 WHERE term = '#version'"))


def upgrade() -> None:
    """Number the chunks, pack their postings per document, drop the row-per-posting tables."""
    conn = op.get_bind()
    _create_new()
    order = conn.execute(
        sa.text(
            "SELECT k.collection_id, k.chunk_id, k.length, c.document_id"
            " FROM ahc_keyword_chunks k LEFT JOIN ahc_knowledge_chunks c ON c.id = k.chunk_id"
            " ORDER BY k.collection_id, c.document_id, c.chunk_index, k.chunk_id"
        )
    ).all()
    groups: defaultdict[tuple[str, str | None], list[tuple[str, int]]] = defaultdict(list)
    for collection_id, chunk_id, length, document_id in order:
        groups[(collection_id, document_id)].append((chunk_id, int(length)))
    next_number: defaultdict[str, int] = defaultdict(int)
    for (collection_id, _), members in groups.items():
        first = next_number[collection_id]
        next_number[collection_id] = first + len(members)
        _write_segment(conn, collection_id, first, members)
    if next_number:
        conn.execute(
            sa.text(
                "INSERT INTO ahc_keyword_terms (collection_id, term, df) VALUES (:c, '#next', :n)"
            ),
            [{"c": c, "n": n} for c, n in next_number.items()],
        )
    _bump_versions(conn)
    op.drop_table("ahc_keyword_log")
    _create_log(numbers=True)
    op.drop_table("ahc_keyword_postings")
    op.drop_index("ix_ahc_keyword_chunks_collection", table_name="ahc_keyword_chunks")
    op.drop_table("ahc_keyword_chunks")


def _write_segment(
    conn: sa.Connection, collection_id: str, first: int, members: list[tuple[str, int]]
) -> None:
    """One document's chunks as a segment: numbers, forward rows, packed posting rows."""
    bags: dict[str, dict[str, int]] = {}
    ids = [chunk_id for chunk_id, _ in members]
    for start in range(0, len(ids), _BATCH):
        rows = conn.execute(
            sa.text(
                "SELECT chunk_id, terms FROM ahc_keyword_chunks WHERE chunk_id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": ids[start : start + _BATCH]},
        )
        bags.update({chunk_id: _decode(encoded) for chunk_id, encoded in rows})
    by_term: defaultdict[str, tuple[list[int], list[int], list[int]]] = defaultdict(
        lambda: ([], [], [])
    )
    forward = []
    for number, (chunk_id, length) in enumerate(members, start=first):
        forward.append({"i": chunk_id, "c": collection_id, "n": number, "s": first, "l": length})
        for term, tf in bags.get(chunk_id, {}).items():
            numbers, tfs, lengths = by_term[term]
            numbers.append(number)
            tfs.append(tf)
            lengths.append(length)
    conn.execute(
        sa.text(
            "INSERT INTO ahc_keyword_numbers (chunk_id, collection_id, number, segment, length)"
            " VALUES (:i, :c, :n, :s, :l)"
        ),
        forward,
    )
    conn.execute(
        sa.text(
            "INSERT INTO ahc_keyword_segments (collection_id, segment, last, terms)"
            " VALUES (:c, :s, :l, :t)"
        ),
        [
            {
                "c": collection_id,
                "s": first,
                "l": first + len(members) - 1,
                "t": " ".join(sorted(by_term)),
            }
        ],
    )
    rows = [
        {"c": collection_id, "t": term, "s": first, "p": _pack(*by_term[term])}
        for term in sorted(by_term)
    ]
    for start in range(0, len(rows), 5000):
        conn.execute(
            sa.text(
                "INSERT INTO ahc_keyword_segment_postings (collection_id, term, segment, postings)"
                " VALUES (:c, :t, :s, :p)"
            ),
            rows[start : start + 5000],
        )


def downgrade() -> None:
    """Rebuild the row-per-posting tables (0011 layout) from the packed rows."""
    conn = op.get_bind()
    op.create_table(
        "ahc_keyword_postings",
        sa.Column("collection_id", sa.String(length=36), nullable=False),
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.Column("chunk_id", sa.String(length=80), nullable=False),
        sa.Column("tf", sa.Integer(), nullable=False),
        sa.Column("chunk_length", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "collection_id",
            "term",
            "chunk_id",
            name=op.f("pk_ahc_keyword_postings"),
            postgresql_include=["tf", "chunk_length"],
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "ahc_keyword_chunks",
        sa.Column("chunk_id", sa.String(length=80), nullable=False),
        sa.Column("collection_id", sa.String(length=36), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("chunk_id", name=op.f("pk_ahc_keyword_chunks")),
    )
    op.create_index(
        "ix_ahc_keyword_chunks_collection", "ahc_keyword_chunks", ["collection_id"], unique=False
    )
    segments = conn.execute(
        sa.text("SELECT collection_id, segment FROM ahc_keyword_segments")
    ).all()
    for collection_id, segment in segments:
        names = dict(
            conn.execute(
                sa.text(
                    "SELECT number, chunk_id FROM ahc_keyword_numbers"
                    " WHERE collection_id = :c AND segment = :s"
                ),
                {"c": collection_id, "s": segment},
            ).all()
        )
        lengths = dict(
            conn.execute(
                sa.text(
                    "SELECT chunk_id, length FROM ahc_keyword_numbers"
                    " WHERE collection_id = :c AND segment = :s"
                ),
                {"c": collection_id, "s": segment},
            ).all()
        )
        bags: defaultdict[str, dict[str, int]] = defaultdict(dict)
        postings = []
        for term, data in conn.execute(
            sa.text(
                "SELECT term, postings FROM ahc_keyword_segment_postings"
                " WHERE collection_id = :c AND segment = :s"
            ),
            {"c": collection_id, "s": segment},
        ):
            n = len(data) // 8
            numbers = np.frombuffer(data, dtype="<u4", count=n)
            tfs = np.frombuffer(data, dtype="<u2", count=n, offset=4 * n)
            for number, tf in zip(numbers.tolist(), tfs.tolist(), strict=True):
                chunk_id = names.get(number)
                if chunk_id is None:
                    continue
                bags[chunk_id][term] = tf
                postings.append(
                    {"c": collection_id, "t": term, "i": chunk_id, "f": tf, "l": lengths[chunk_id]}
                )
        for start in range(0, len(postings), 5000):
            conn.execute(
                sa.text(
                    "INSERT INTO ahc_keyword_postings"
                    " (collection_id, term, chunk_id, tf, chunk_length)"
                    " VALUES (:c, :t, :i, :f, :l)"
                ),
                postings[start : start + 5000],
            )
        forward = [
            {
                "i": chunk_id,
                "c": collection_id,
                "l": length,
                "t": " ".join(
                    t if f == 1 else f"{t}:{f}" for t, f in sorted(bags.get(chunk_id, {}).items())
                ),
            }
            for chunk_id, length in lengths.items()
        ]
        if forward:
            conn.execute(
                sa.text(
                    "INSERT INTO ahc_keyword_chunks (chunk_id, collection_id, length, terms)"
                    " VALUES (:i, :c, :l, :t)"
                ),
                forward,
            )
    conn.execute(sa.text("DELETE FROM ahc_keyword_terms WHERE term = '#next'"))
    _bump_versions(conn)
    op.drop_table("ahc_keyword_log")
    _create_log(numbers=False)
    op.drop_index("ux_ahc_keyword_numbers_number", table_name="ahc_keyword_numbers")
    op.drop_table("ahc_keyword_numbers")
    op.drop_table("ahc_keyword_segments")
    op.drop_table("ahc_keyword_segment_postings")
