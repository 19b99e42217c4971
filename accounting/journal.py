"""The usage journal: every accepted usage event on disk before it waits for its batch.

The recorder batches events in memory for the database; a process killed outright
(``kill -9``, out of memory) would lose the batch it held. So ``record()`` also appends the
event to this journal, one ``write`` to a file the process holds open: the operating system
keeps the bytes even when the process dies at the next instruction (a machine losing power
is the database's replication's business, not this file's). Segments are deleted once every
event in them is in the database; a new process replays the segments nobody holds.

Segments are files ``<directory>/<uuid>.jsonl``. A process holds an exclusive ``flock`` on
each of its segments until it deletes them, so instances sharing a data directory (the
compose file's volume) never take each other's: only a dead process's locks are free.
Replaying a segment twice is harmless, since inserts skip event ids already written.

On the event loop only ``append`` (one ``write``) and ``rotate`` run; opening, reading and
deleting segments happen in a thread (the recorder sees to it). Segments are opened with
``O_NONBLOCK``: Linux ignores it for regular files (a write lands in the page cache), and it
tells blocking-call detectors (LangGraph's, under ``langgraph dev``) that the write is not
one of the calls they look for.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import orjson

from accounting.events import UsageRecord

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Segment:
    path: Path
    fd: int
    last_seq: int = 0
    """The sequence number of the last event written to it (0: none yet)."""


class UsageJournal:
    """Append-only segments of usage events, with the sequence numbers the recorder tracks."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._current: _Segment | None = None
        self._closed: deque[_Segment] = deque()
        self._seq = 0

    def open(self) -> list[UsageRecord]:
        """Start a segment of our own; return the events of segments no live process holds."""
        self._directory.mkdir(parents=True, exist_ok=True)
        orphans = self._adopt_orphans()
        self._current = self._new_segment()
        events: list[UsageRecord] = []
        for segment in orphans:
            events.extend(_read(segment.path))
        # The adopted segments are deleted once their events are written, like ours.
        if events:
            self._seq += len(events)
            for segment in orphans:
                segment.last_seq = self._seq
            logger.warning("replaying %d usage events of a process that died", len(events))
        self._closed.extend(orphans)
        return events

    def append(self, event: UsageRecord) -> int:
        """Write one event; its sequence number (events are numbered in order)."""
        self._seq += 1
        if self._current is not None:
            # orjson writes the dataclass itself (~2 µs; ``to_json``'s ``asdict`` costs ~30).
            line = orjson.dumps(event, default=str, option=orjson.OPT_APPEND_NEWLINE)
            try:
                os.write(self._current.fd, line)
                self._current.last_seq = self._seq
            except OSError as exc:  # a full disk must not fail the request: log it
                logger.error("usage journal write failed: %s", exc)
        return self._seq

    @property
    def seq(self) -> int:
        """The sequence number of the last event appended."""
        return self._seq

    def rotate(self) -> None:
        """Close the current segment for writing (if it has events) and start another."""
        if self._current is None or not self._current.last_seq:
            return
        self._closed.append(self._current)
        self._current = self._new_segment()

    def settled(self, seq: int) -> list[_Segment]:
        """Every event up to ``seq`` is safe: the segments to delete (with :func:`remove`).

        No I/O here, so it may run on the event loop.
        """
        done = []
        while self._closed and self._closed[0].last_seq <= seq:
            done.append(self._closed.popleft())
        return done

    def close(self, *, keep: bool) -> None:
        """Stop: delete every segment (``keep=False``: all events are safe) or keep them."""
        segments = [*self._closed, *([self._current] if self._current else [])]
        self._closed.clear()
        self._current = None
        for segment in segments:
            if keep and segment.last_seq:
                os.close(segment.fd)
            else:
                _remove(segment)

    def _new_segment(self) -> _Segment:
        path = self._directory / f"{uuid.uuid4().hex}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return _Segment(path, fd)

    def _adopt_orphans(self) -> list[_Segment]:
        """The segments whose lock is free: their process is gone."""
        adopted: list[_Segment] = []
        for path in sorted(self._directory.glob("*.jsonl")):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:  # deleted meanwhile by its owner
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live process holds it
                os.close(fd)
                continue
            adopted.append(_Segment(path, fd))
        return adopted


def _read(path: Path) -> list[UsageRecord]:
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(UsageRecord.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):  # a line cut by the crash
            logger.warning("skipped a torn usage journal line in %s", path.name)
    return events


def remove(segments: list[_Segment]) -> None:
    """Delete settled segments (blocking I/O: call it from a thread)."""
    for segment in segments:
        _remove(segment)


def _remove(segment: _Segment) -> None:
    try:
        segment.path.unlink(missing_ok=True)
    finally:
        os.close(segment.fd)
