"""The durable outbox: every uplink event is committed here before it is published.

Rows are deleted only after cloud ingest acknowledged their commit (``topics.ack``,
decision 0028), or, with no cloud ingest to answer, the uplink broker's PUBACK
(``uplink.publisher``). The
per-store ``seq`` is the row's ``INTEGER PRIMARY KEY AUTOINCREMENT``: monotonic and
never reused, across restarts and even when the table is empty. ``id`` is UNIQUE, so a
local message redelivered after a crash does not create a second row.

Bounds: total payload bytes and age. Beyond them the oldest *low-value* rows are
dropped and counted (``storefleet_outbox_dropped_total{reason}``) - the cloud sees the
gap in seq. Business events (``protocols.business``) are never dropped: the outbox
alarms when their headroom falls under an hour, then refuses new low-value rows, and
past the bound still takes business rows (``uplink.outbox_bounds``, decision 0025).

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
from typing import TypeVar

from edge_agent.metrics import AgentMetrics
from edge_agent.storage import Database
from edge_agent.uplink.outbox_bounds import (
    ALARMS,
    AlarmStates,
    OutboxAlarm,
    Transition,
    WriteRate,
    headroom_s,
)
from protocols import topics
from protocols.business import topic_low_value
from protocols.clock import Clock
from protocols.codec import encode
from protocols.ids import uuid7
from protocols.messages import Event

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_AGENT_DEVICE = "agent"  # the device id of the agent's own alarms (the shadow's target too)


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
    low_value_bytes: int = 0  # of ``bytes``: what a full outbox may drop


class Outbox:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        metrics: AgentMetrics,
        max_bytes: int,
        max_age_s: float,
        headroom_alarm_s: float = 3600.0,
        store_id: str | None = None,
    ) -> None:
        """``store_id``: where the outbox's own ``device_alarm`` events go (none: the
        alarms are metrics and logs only, as in benches)."""
        self._db = db
        self._clock = clock
        self._metrics = metrics
        self._max_bytes = max_bytes
        self._max_age_ms = int(max_age_s * 1000)
        self._store_id = store_id
        self._totals = _Totals()
        self._added = asyncio.Event()
        self._business_rate = WriteRate()
        self._alarms = AlarmStates(headroom_alarm_s=headroom_alarm_s)
        self._refusing = False
        for alarm in ALARMS:
            metrics.outbox_alarm.labels(alarm=alarm).set(0)
        metrics.bind_outbox(
            depth=lambda: self._totals.depth,
            size=lambda: self._totals.bytes,
            oldest_age_s=lambda: self.oldest_age_ms() / 1000,
            headroom_s=self.headroom_s,
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

    def business_bytes(self) -> int:
        return self._totals.bytes - self._totals.low_value_bytes

    def headroom_s(self) -> float:
        """Seconds until business rows alone fill the byte bound at their current rate."""
        return headroom_s(
            max_bytes=self._max_bytes,
            business_bytes=self.business_bytes(),
            business_rate=self._business_rate.per_s(self._clock.now_ms()),
        )

    def alarms(self) -> list[OutboxAlarm]:
        """The outbox alarms raised now (``outbox_bounds.ALARMS``)."""
        return [a for a in ALARMS if a in self._alarms.active]

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
        """Commit ``items`` in one transaction; the seq of each, or None for a duplicate
        id or a low-value row refused because business rows fill the outbox (counted)."""
        seqs, refused = await self._put(items)
        await self._check_alarms(refusing=refused > 0)
        return seqs

    async def _put(
        self, items: Sequence[NewRow], *, keep: bool = False
    ) -> tuple[list[int | None], int]:
        """``keep``: never refuse nor drop these rows, whatever their kind."""
        if not items:
            return [], 0
        now = self._clock.now_ms()
        low_flags = [not keep and topic_low_value(item.topic) for item in items]
        max_bytes = self._max_bytes
        refused_kinds: list[str] = []

        def run(conn: sqlite3.Connection) -> list[int | None]:
            t = self._totals
            business = t.bytes - t.low_value_bytes
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'rows'").fetchone()
            next_seq = (row[0] if row else 0) + 1
            seqs: list[int | None] = []
            added_bytes = added_low = added_business = 0
            for item, low in zip(items, low_flags, strict=True):
                payload = item.encode(next_seq)
                if low and business + len(payload) > max_bytes:
                    # Even with every other low-value row dropped it would not fit.
                    refused_kinds.append(item.topic.rsplit("/", 1)[-1])
                    seqs.append(None)
                    continue
                cur = conn.execute(
                    "INSERT OR IGNORE INTO rows"
                    "(seq, id, topic, payload, created_ms, size, low_value) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (next_seq, item.id, item.topic, payload, now, len(payload), int(low)),
                )
                if cur.rowcount == 1:
                    seqs.append(next_seq)
                    added_bytes += len(payload)
                    if low:
                        added_low += len(payload)
                    else:
                        added_business += len(payload)
                        business += len(payload)
                    next_seq += 1
                else:
                    seqs.append(None)
            conn.execute("COMMIT")
            added = sum(1 for s in seqs if s is not None)
            if added:
                t.depth += added
                t.bytes += added_bytes
                t.low_value_bytes += added_low
                t.last_seq = next_seq - 1
                if t.oldest_ms is None:
                    t.oldest_ms = now
                self._metrics.events_enqueued.inc(added)
                self._business_rate.add(now, added_business)
            duplicates = len(items) - added - len(refused_kinds)
            if duplicates:
                self._metrics.events_duplicate.inc(duplicates)
            return seqs

        seqs = await self._db.call(run, op="outbox.put_many")
        if any(s is not None for s in seqs):
            self._added.set()
        self._count_refusals(refused_kinds, accepted_low=any(
            low and s is not None for low, s in zip(low_flags, seqs, strict=True)))
        if self._totals.bytes > self._max_bytes and self._totals.low_value_bytes:
            await self._enforce()
        return seqs, len(refused_kinds)

    def _count_refusals(self, kinds: list[str], *, accepted_low: bool) -> None:
        for kind in kinds:
            self._metrics.outbox_refused.labels(kind=kind, reason="full").inc()
        if kinds and not self._refusing:
            logger.warning(
                "outbox full of business events (%d bytes, bound %d): refusing new "
                "low-value events (first: %s)", self.business_bytes(), self._max_bytes, kinds[0]
            )
        if kinds:
            self._refusing = True
        elif accepted_low and self._refusing:
            logger.info("outbox takes low-value events again")
            self._refusing = False

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

    async def rows(self, seqs: Sequence[int], *, mark_attempt: bool = False) -> list[Row]:
        """The rows among ``seqs`` that still exist, oldest first (optionally attempts += 1)."""
        seq_list = list(seqs)

        def run(conn: sqlite3.Connection) -> list[Row]:
            found: list[Row] = []
            for part in _chunks(seq_list):
                marks = ",".join("?" * len(part))
                found += [Row(*r) for r in conn.execute(
                    "SELECT seq, id, topic, payload, created_ms, size, attempts FROM rows "
                    f"WHERE seq IN ({marks})", part)]
                if mark_attempt:
                    conn.execute(
                        f"UPDATE rows SET attempts = attempts + 1 WHERE seq IN ({marks})", part
                    )
            return sorted(found, key=lambda r: r.seq)

        if not seq_list:
            return []
        return await self._db.call(run, op="outbox.rows")

    async def delete(self, seqs: Sequence[int]) -> int:
        """Delete rows by seq (acknowledged by the broker); returns how many existed."""
        return len(await self._delete("seq", list(seqs)))

    async def delete_ids(self, ids: Sequence[str]) -> list[int]:
        """Delete rows by event id (acknowledged by the cloud); the seqs that existed."""
        return await self._delete("id", list(ids))

    async def _delete(self, column: str, values: Sequence[int] | Sequence[str]) -> list[int]:
        if not values:
            return []

        def run(conn: sqlite3.Connection) -> list[int]:
            conn.execute("BEGIN IMMEDIATE")
            seqs: list[int] = []
            freed = freed_low = 0
            for part in _chunks(values):
                marks = ",".join("?" * len(part))
                for seq, size, low in conn.execute(
                    f"DELETE FROM rows WHERE {column} IN ({marks}) "
                    "RETURNING seq, size, low_value", part
                ).fetchall():
                    seqs.append(seq)
                    freed += size
                    freed_low += size if low else 0
            conn.execute("COMMIT")
            self._totals.depth -= len(seqs)
            self._totals.bytes -= freed
            self._totals.low_value_bytes -= freed_low
            self._totals.oldest_ms = _oldest(conn)
            return seqs

        return await self._db.call(run, op=f"outbox.delete_by_{column}")

    async def enforce_bounds(self) -> dict[str, int]:
        """Drop the oldest low-value rows beyond the age and byte bounds (counts per
        reason); raise or clear the outbox alarms."""
        dropped = await self._enforce()
        await self._check_alarms(refusing=False)
        if "outbox_over_bound" in self._alarms.active:  # loud while it lasts
            logger.error(
                "outbox holds %d bytes of business events, over its bound of %d: "
                "kept, never dropped; the uplink must drain it",
                self.business_bytes(), self._max_bytes,
            )
        return dropped

    async def _enforce(self) -> dict[str, int]:
        cutoff = self._clock.now_ms() - self._max_age_ms
        max_bytes = self._max_bytes

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            t = self._totals
            conn.execute("BEGIN IMMEDIATE")
            by_age = conn.execute(
                "DELETE FROM rows WHERE low_value = 1 AND created_ms < ? RETURNING size",
                (cutoff,),
            ).fetchall()
            freed = sum(size for (size,) in by_age)
            excess = t.bytes - freed - max_bytes
            by_bytes: list[tuple[int]] = []
            if excess > 0:
                last = None
                gained = 0
                for seq, size in conn.execute(
                    "SELECT seq, size FROM rows WHERE low_value = 1 ORDER BY seq"
                ):
                    gained += size
                    last = seq
                    if gained >= excess:
                        break
                if last is not None:
                    by_bytes = conn.execute(
                        "DELETE FROM rows WHERE low_value = 1 AND seq <= ? RETURNING size",
                        (last,),
                    ).fetchall()
            conn.execute("COMMIT")
            freed += sum(size for (size,) in by_bytes)
            t.depth -= len(by_age) + len(by_bytes)
            t.bytes -= freed
            t.low_value_bytes -= freed
            t.oldest_ms = _oldest(conn)
            return len(by_age), len(by_bytes)

        by_age, by_bytes = await self._db.call(run, op="outbox.enforce_bounds")
        dropped = {"max_age": by_age, "max_bytes": by_bytes}
        for reason, count in dropped.items():
            if count:
                self._metrics.outbox_dropped.labels(reason=reason).inc(count)
                logger.warning(
                    "outbox over its bound (%s): dropped %d oldest low-value events",
                    reason, count,
                )
        return dropped

    # ---- alarms -----------------------------------------------------------------------

    async def _check_alarms(self, *, refusing: bool) -> None:
        headroom = self.headroom_s()
        changes = self._alarms.update(
            headroom=headroom,
            refusing=refusing,
            over_bound=self.business_bytes() > self._max_bytes,
        )
        for change in changes:
            self._metrics.outbox_alarm.labels(alarm=change.alarm).set(int(change.active))
            log = logger.info
            if change.active:
                log = logger.error if change.alarm == "outbox_over_bound" else logger.warning
            log(
                "outbox alarm %s %s: headroom %.0f s, %d of %d bytes are business events",
                change.alarm, "raised" if change.active else "cleared", headroom,
                self.business_bytes(), self._max_bytes,
            )
        if changes and self._store_id is not None:
            # Kept like a business event: an alarm about a full outbox must get out.
            await self._put([self._alarm_row(c, headroom) for c in changes], keep=True)

    def _alarm_row(self, change: Transition, headroom: float) -> NewRow:
        assert self._store_id is not None
        store_id, now = self._store_id, self._clock.now_ms()
        event_id = uuid7(now)
        data = {
            "alarm": change.alarm,
            "active": change.active,
            "headroom_s": round(headroom),
            "outbox_bytes": self._totals.bytes,
            "business_bytes": self.business_bytes(),
            "max_bytes": self._max_bytes,
        }

        def build(seq: int) -> bytes:
            return encode(Event(id=event_id, kind="device_alarm", store_id=store_id,
                                device_id=_AGENT_DEVICE, seq=seq, ts=now, data=data))

        return NewRow(id=event_id, topic=topics.evt(store_id, "device_alarm"), encode=build)


def _chunks(values: Sequence[_T]) -> list[list[_T]]:
    chunk = 500  # stay far below SQLite's bound-parameter limit
    return [list(values[i : i + chunk]) for i in range(0, len(values), chunk)]


def _oldest(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT created_ms FROM rows ORDER BY seq LIMIT 1").fetchone()
    return None if row is None else int(row[0])


def _read_totals(conn: sqlite3.Connection) -> _Totals:
    depth, size, low = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0), "
        "COALESCE(SUM(CASE WHEN low_value = 1 THEN size END), 0) FROM rows"
    ).fetchone()
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'rows'").fetchone()
    return _Totals(depth=depth, bytes=size, oldest_ms=_oldest(conn),
                   last_seq=row[0] if row else 0, low_value_bytes=low)
