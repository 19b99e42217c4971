"""Writes usage events in batches, off the request path, and loses none.

``record()`` appends to an in-memory buffer and to the usage journal (one ``write``: the
event survives the process being killed; see ``accounting.journal``), and never blocks.
A background task inserts the buffer in batches. When the database is down, events stay
in the buffer and the task retries with backoff; past ``max_buffer`` events, or at
shutdown with the database still down, they go to a spool file (JSON lines in the data
directory) that is replayed on the next start. Inserts ignore ids already written, so a
batch retried after an ambiguous failure is not counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from pathlib import Path
from typing import cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounting.events import UsageRecord
from accounting.journal import UsageJournal, remove
from db.models import UsageEvent

logger = logging.getLogger(__name__)


class UsageRecorder:
    """The one writer of ``ahc_usage_events`` in a process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        spool_path: Path,
        batch_size: int = 500,
        flush_interval: float = 0.25,
        max_buffer: int = 50_000,
        max_backoff: float = 5.0,
        journal: UsageJournal | None = None,
    ) -> None:
        self._sessions = sessions
        self._spool_path = spool_path
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._max_backoff = max_backoff
        self._journal = journal
        # (journal sequence number, event): the journal drops a segment once every event
        # in it has left the buffer for the database or the spool (0: not journaled).
        self._buffer: deque[tuple[int, UsageRecord]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.failures = 0

    # -- the hot path -----------------------------------------------------------------
    def record(self, event: UsageRecord) -> None:
        """Accept an event (never raises, never blocks)."""
        seq = self._journal.append(event) if self._journal is not None else 0
        self._buffer.append((seq, event))
        if len(self._buffer) > self._max_buffer:
            self._spool([self._buffer.popleft() for _ in range(len(self._buffer) // 2)])
        if len(self._buffer) >= self._batch_size:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        """Events accepted but not yet in the database (spooled ones excluded)."""
        return len(self._buffer)

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Replay the spool and the journal of earlier runs, then start the writer task."""
        self._replay_spool()
        if self._journal is not None:
            orphans = await asyncio.to_thread(self._journal.open)
            self._buffer.extend((self._journal.seq, event) for event in orphans)
        self._task = asyncio.create_task(self._run(), name="usage-recorder")

    async def aclose(self, drain_seconds: float = 10.0) -> None:
        """Flush what is buffered; spool whatever the database does not take in time."""
        self._wakeup.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_seconds):
                while self._buffer and await self.flush():
                    pass
        if self._buffer:
            self._spool(list(self._buffer))
            self._buffer.clear()
        if self._journal is not None:  # every event is in the database or the spool
            await asyncio.to_thread(self._journal.close, keep=False)

    async def _run(self) -> None:
        backoff = self._flush_interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._wakeup.wait()
            self._wakeup.clear()
            ok = await self.flush()
            # Drain only full batches now: the events that arrive during a flush wait for
            # the next interval, else steady traffic turns into one commit per event.
            while ok and len(self._buffer) >= self._batch_size:
                ok = await self.flush()
            backoff = self._flush_interval if ok else min(backoff * 2, self._max_backoff)

    async def flush(self) -> bool:
        """Insert one batch; on failure the batch goes back to the front of the buffer."""
        batch = [self._buffer.popleft() for _ in range(min(self._batch_size, len(self._buffer)))]
        if not batch:
            return True
        if self._journal is not None:  # events from now on go to a segment of their own
            self._journal.rotate()
        try:
            async with self._sessions() as session:
                dialect = session.get_bind().dialect.name
                insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
                # A Core insert of the table (executemany): the ORM's bulk path cost
                # several times more CPU per batch.
                statement = insert(cast(Table, UsageEvent.__table__)).on_conflict_do_nothing(
                    index_elements=["id"]
                )
                await session.execute(statement, [event.row() for _, event in batch])
                await session.commit()
        except asyncio.CancelledError:
            # Stopped mid-insert: keep the batch (if the commit did land, ids dedupe it).
            self._buffer.extendleft(reversed(batch))
            raise
        except Exception as exc:  # database down, connection killed...: retry later
            self.failures += 1
            self._buffer.extendleft(reversed(batch))
            logger.warning("usage events not written yet (%d pending): %s", len(self._buffer), exc)
            return False
        self.written += len(batch)
        self._settled(batch)
        self._replayed()
        return True

    # -- the spool ----------------------------------------------------------------------
    def _settled(self, events: list[tuple[int, UsageRecord]]) -> None:
        """``events`` (the oldest of the buffer) are safe: drop their journal segments."""
        if self._journal is None or not events:
            return
        done = self._journal.settled(max(seq for seq, _ in events))
        if not done:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            remove(done)
            return
        # Deleting files is blocking I/O: a thread does it. Should the process die first,
        # the next start replays those segments, and the ids already written are skipped.
        loop.run_in_executor(None, remove, done)

    def _spool(self, events: list[tuple[int, UsageRecord]]) -> None:
        self._spool_path.parent.mkdir(parents=True, exist_ok=True)
        with self._spool_path.open("a", encoding="utf-8") as handle:
            for _, event in events:
                handle.write(json.dumps(event.to_json()) + "\n")
        logger.warning("spooled %d usage events to %s", len(events), self._spool_path)
        if self._journal is not None:
            self._journal.rotate()
        self._settled(events)

    @property
    def _replaying(self) -> Path:
        return self._spool_path.with_suffix(".replaying")

    def _replay_spool(self) -> None:
        """Load spooled events; the file stays until they are all written (ids dedupe)."""
        if self._spool_path.exists():
            with self._replaying.open("a", encoding="utf-8") as out:
                out.write(self._spool_path.read_text(encoding="utf-8"))
            self._spool_path.unlink()
        if not self._replaying.exists():
            return
        with self._replaying.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    self._buffer.append((0, UsageRecord.from_json(json.loads(line))))
        logger.info("replaying %d spooled usage events", len(self._buffer))

    def _replayed(self) -> None:
        if not self._buffer and self._replaying.exists():
            self._replaying.unlink()
