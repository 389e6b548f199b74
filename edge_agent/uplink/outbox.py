"""The durable outbox: every uplink event is committed here before it is published.

Rows are deleted only after the uplink broker's PUBACK (``uplink.publisher``). The
per-store ``seq`` is the row's ``INTEGER PRIMARY KEY AUTOINCREMENT``: monotonic and
never reused, across restarts and even when the table is empty. ``id`` is UNIQUE, so a
local message redelivered after a crash does not create a second row.

Bounds: total payload bytes and age. Beyond them the oldest rows are dropped and
counted (``storefleet_outbox_dropped_total{reason}``) - the cloud sees the gap in seq.

Depth, bytes and the oldest row's timestamp are kept in memory (loaded at open,
updated by each call) so that metrics and diagnostics never touch the disk. They are
updated on the database thread right after each commit, not after the ``await``: a
caller cancelled while its commit runs must not leave them off by that commit.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_agent.metrics import AgentMetrics
from edge_agent.storage import Database
from protocols.clock import Clock

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NewRow:
    """An event to enqueue; ``encode(seq)`` builds the payload once the seq is known."""

    id: str
    topic: str
    encode: Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    id: str
    topic: str
    payload: bytes
    created_ms: int
    size: int
    attempts: int


@dataclass(slots=True)
class _Totals:
    depth: int = 0
    bytes: int = 0
    oldest_ms: int | None = None
    last_seq: int = 0


class Outbox:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        metrics: AgentMetrics,
        max_bytes: int,
        max_age_s: float,
    ) -> None:
        self._db = db
        self._clock = clock
        self._metrics = metrics
        self._max_bytes = max_bytes
        self._max_age_ms = int(max_age_s * 1000)
        self._totals = _Totals()
        self._added = asyncio.Event()
        metrics.bind_outbox(
            depth=lambda: self._totals.depth,
            size=lambda: self._totals.bytes,
            oldest_age_s=lambda: self.oldest_age_ms() / 1000,
        )

    async def load(self) -> None:
        """Read the totals of what an earlier run left; apply the bounds."""

        def run(conn: sqlite3.Connection) -> None:
            self._totals = _read_totals(conn)

        await self._db.call(run, op="outbox.load")
        if self._totals.depth:
            logger.info(
                "outbox holds %d events (%d bytes) from an earlier run",
                self._totals.depth,
                self._totals.bytes,
            )
            self._added.set()
        await self.enforce_bounds()

    # ---- reads from memory ----------------------------------------------------

    def depth(self) -> int:
        return self._totals.depth

    def bytes(self) -> int:
        return self._totals.bytes

    def oldest_age_ms(self) -> int:
        oldest = self._totals.oldest_ms
        return 0 if oldest is None else max(0, self._clock.now_ms() - oldest)

    @property
    def last_seq(self) -> int:
        """The highest seq ever assigned (0 if none); rows at or below it exist or existed."""
        return self._totals.last_seq

    async def wait_for_rows(self, max_wait_s: float) -> None:
        """Return when a put may have added rows, or after ``max_wait_s`` seconds."""
        try:
            await asyncio.wait_for(self._added.wait(), max_wait_s)
        except TimeoutError:
            pass
        self._added.clear()

    # ---- writes ------------------------------------------------------------------

    async def put_many(self, items: Sequence[NewRow]) -> list[int | None]:
        """Commit ``items`` in one transaction; the seq of each, or None for a duplicate id."""
        if not items:
            return []
        now = self._clock.now_ms()

        def run(conn: sqlite3.Connection) -> list[int | None]:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'rows'").fetchone()
            next_seq = (row[0] if row else 0) + 1
            seqs: list[int | None] = []
            added_bytes = 0
            for item in items:
                payload = item.encode(next_seq)
                cur = conn.execute(
                    "INSERT OR IGNORE INTO rows(seq, id, topic, payload, created_ms, size) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (next_seq, item.id, item.topic, payload, now, len(payload)),
                )
                if cur.rowcount == 1:
                    seqs.append(next_seq)
                    added_bytes += len(payload)
                    next_seq += 1
                else:
                    seqs.append(None)
            conn.execute("COMMIT")
            added = sum(1 for s in seqs if s is not None)
            t = self._totals
            if added:
                t.depth += added
                t.bytes += added_bytes
                t.last_seq = next_seq - 1
                if t.oldest_ms is None:
                    t.oldest_ms = now
                self._metrics.events_enqueued.inc(added)
            if added < len(items):
                self._metrics.events_duplicate.inc(len(items) - added)
            return seqs

        seqs = await self._db.call(run, op="outbox.put_many")
        if any(s is not None for s in seqs):
            self._added.set()
        if self._totals.bytes > self._max_bytes:
            await self.enforce_bounds()
        return seqs

    async def peek(self, n: int, *, after_seq: int = 0, mark_attempt: bool = False) -> list[Row]:
        """Up to ``n`` rows with seq > ``after_seq``, oldest first (optionally attempts += 1)."""

        def run(conn: sqlite3.Connection) -> list[Row]:
            rows = [
                Row(*r)
                for r in conn.execute(
                    "SELECT seq, id, topic, payload, created_ms, size, attempts FROM rows "
                    "WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, n),
                )
            ]
            if mark_attempt and rows:
                conn.execute(
                    "UPDATE rows SET attempts = attempts + 1 WHERE seq BETWEEN ? AND ?",
                    (rows[0].seq, rows[-1].seq),
                )
            return rows

        return await self._db.call(run, op="outbox.peek")

    async def delete(self, seqs: Sequence[int]) -> int:
        """Delete rows (acknowledged by the broker); returns how many existed."""
        if not seqs:
            return 0
        seq_list = list(seqs)

        def run(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            count = freed = 0
            chunk = 500  # stay far below SQLite's bound-parameter limit
            for i in range(0, len(seq_list), chunk):
                part = seq_list[i : i + chunk]
                marks = ",".join("?" * len(part))
                for (size,) in conn.execute(
                    f"DELETE FROM rows WHERE seq IN ({marks}) RETURNING size", part
                ).fetchall():
                    count += 1
                    freed += size
            conn.execute("COMMIT")
            self._totals.depth -= count
            self._totals.bytes -= freed
            self._totals.oldest_ms = _oldest(conn)
            return count

        return await self._db.call(run, op="outbox.delete")

    async def enforce_bounds(self) -> dict[str, int]:
        """Drop the oldest rows beyond the age and byte bounds; counts per reason."""
        cutoff = self._clock.now_ms() - self._max_age_ms
        max_bytes = self._max_bytes

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            conn.execute("BEGIN IMMEDIATE")
            by_age = conn.execute("DELETE FROM rows WHERE created_ms < ?", (cutoff,)).rowcount
            total = conn.execute("SELECT COALESCE(SUM(size), 0) FROM rows").fetchone()[0]
            by_bytes = 0
            if total > max_bytes:
                excess = total - max_bytes
                freed, last = 0, 0
                for seq, size in conn.execute("SELECT seq, size FROM rows ORDER BY seq"):
                    freed += size
                    last = seq
                    if freed >= excess:
                        break
                by_bytes = conn.execute("DELETE FROM rows WHERE seq <= ?", (last,)).rowcount
            conn.execute("COMMIT")
            self._totals = _read_totals(conn)
            return by_age, by_bytes

        by_age, by_bytes = await self._db.call(run, op="outbox.enforce_bounds")
        dropped = {"max_age": by_age, "max_bytes": by_bytes}
        for reason, count in dropped.items():
            if count:
                self._metrics.outbox_dropped.labels(reason=reason).inc(count)
                logger.warning(
                    "outbox over its bound (%s): dropped %d oldest events", reason, count
                )
        return dropped


def _oldest(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT created_ms FROM rows ORDER BY seq LIMIT 1").fetchone()
    return None if row is None else int(row[0])


def _read_totals(conn: sqlite3.Connection) -> _Totals:
    depth, size = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM rows").fetchone()
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'rows'").fetchone()
    return _Totals(depth=depth, bytes=size, oldest_ms=_oldest(conn), last_seq=row[0] if row else 0)
