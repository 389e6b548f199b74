"""Offline coupon issuing: pre-allocated code ranges and the local issue ledger.

The cloud allocates a store ranges of single-use codes (``cloud.orders.coupon_ranges``:
``{prefix}{n:06d}`` for ``start <= n < end``, each range answering to one engine coupon
code). The store box keeps them in ``triggers.db`` under ``data_dir`` and issues from
them without the cloud. One SQLite transaction takes the next number of a range and
records the issue, keyed by the decision's deterministic ``issue_id``:

- the same ``issue_id`` twice returns the first coupon (idempotent);
- a range's ``next`` only moves forward and is committed with the issue, so a code is
  never handed out twice, across restarts and ``kill -9`` included;
- ``evented`` marks issues whose ``coupon_issued`` event reached the outbox; issues a
  crash left between the two are re-emitted at start-up (same event id: stored once).

Redeeming (``redeem``) marks a code used: single use at this store; the cloud's
``offline_redemptions`` primary key settles races between stores.

Where codes come from: each range has a ``source``. ``cloud`` ranges are the ones HQ
allocated to this store (the till's ``RangeCache``); ``bundle`` ranges come with the
offline sample data and are known to no cloud. Once the store has ever had a cloud
range, it issues only from cloud ranges: a code from a bundle range would be flagged
``not_allocated`` at every redemption. ``cloud_ranges`` (the till's ranges, read at every
issue) is synced into the same transaction that issues, so the first coupon issued after
the till receives its allocation already comes from it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_agent.inference.triggers.errors import NoCodesLeft
from edge_agent.storage import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS code_ranges (
    prefix      TEXT PRIMARY KEY,
    engine_code TEXT NOT NULL,
    start       INTEGER NOT NULL,
    end_        INTEGER NOT NULL,
    next        INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    source      TEXT NOT NULL DEFAULT 'bundle'  -- cloud | bundle (see the docstring)
);
CREATE TABLE IF NOT EXISTS issued (
    issue_id    TEXT PRIMARY KEY,
    code        TEXT NOT NULL UNIQUE,
    engine_code TEXT NOT NULL,
    rule_id     TEXT NOT NULL,
    who         TEXT NOT NULL,
    day         INTEGER NOT NULL,
    cart_id     TEXT NOT NULL,
    session_id  TEXT,
    member_id   TEXT,
    issued_ms   INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    evented     INTEGER NOT NULL DEFAULT 0,
    redeemed_ms INTEGER
);
CREATE INDEX IF NOT EXISTS ix_issued_day ON issued(day);
CREATE INDEX IF NOT EXISTS ix_issued_member ON issued(member_id);
"""
# Files written before ranges had a source: their ranges count as bundle ranges until the
# till's ranges name them again (the safe side: never issue a code the cloud may not know).
_ADD_SOURCE = "ALTER TABLE code_ranges ADD COLUMN source TEXT NOT NULL DEFAULT 'bundle'"
# A cloud range stays one when the bundle names the same prefix again at start-up.
_UPSERT_RANGE = ("INSERT INTO code_ranges(prefix, engine_code, start, end_, next, expires_ms, "
                 "source) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(prefix) DO UPDATE SET "
                 "end_ = MAX(end_, excluded.end_), expires_ms = excluded.expires_ms, "
                 "source = CASE WHEN source = 'cloud' THEN 'cloud' ELSE excluded.source END")
# Bundle ranges only while the store has never had a cloud range.
_ISSUABLE = ("(source = 'cloud' OR NOT EXISTS (SELECT 1 FROM code_ranges WHERE "
             "source = 'cloud'))")
RangeSource = Literal["cloud", "bundle"]


@dataclass(frozen=True, slots=True)
class CodeRange:
    """Codes ``{prefix}{n:06d}`` for ``start <= n < end`` (same shape as the cloud's)."""

    start: int
    end: int
    prefix: str
    engine_code: str
    expires_ms: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"bad code range {self.start}..{self.end}")

    def code(self, n: int) -> str:
        return f"{self.prefix}{n:06d}"


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    issue_id: str
    code: str
    engine_code: str
    rule_id: str
    who: str
    day: int
    cart_id: str
    session_id: str | None
    member_id: str | None
    issued_ms: int
    expires_ms: int
    evented: bool = False
    redeemed_ms: int | None = None

    def usable(self, now_ms: int) -> bool:
        return self.redeemed_ms is None and now_ms < self.expires_ms


_COLS = ("issue_id, code, engine_code, rule_id, who, day, cart_id, session_id, member_id, "
         "issued_ms, expires_ms, evented, redeemed_ms")


def _row(r: tuple[Any, ...]) -> IssuedCoupon:
    return IssuedCoupon(issue_id=r[0], code=r[1], engine_code=r[2], rule_id=r[3], who=r[4],
                        day=r[5], cart_id=r[6], session_id=r[7], member_id=r[8],
                        issued_ms=r[9], expires_ms=r[10], evented=bool(r[11]),
                        redeemed_ms=r[12])


def _upsert(c: sqlite3.Connection, r: CodeRange, source: RangeSource) -> None:
    c.execute(_UPSERT_RANGE, (r.prefix, r.engine_code, r.start, r.end, r.start, r.expires_ms,
                              source))


def _schema(c: sqlite3.Connection) -> None:
    c.executescript(_SCHEMA)
    if "source" not in {row[1] for row in c.execute("PRAGMA table_info(code_ranges)")}:
        c.execute(_ADD_SOURCE)


class CouponLedger:
    """Code ranges and issued coupons in ``{data_dir}/triggers.db``.

    ``cloud_ranges``: the ranges HQ allocated to the store as the till has them now
    (read at every issue; synced when they changed)."""

    def __init__(self, path: Path, *, synchronous: str = "FULL",
                 cloud_ranges: Callable[[], Sequence[CodeRange]] | None = None) -> None:
        self._db = Database(path, synchronous=synchronous)
        self._cloud_ranges = cloud_ranges
        self._synced: tuple[CodeRange, ...] = ()  # the cloud ranges last written

    async def open(self) -> None:
        await self._db.open()
        await self._db.call(_schema, op="triggers.schema")

    async def close(self) -> None:
        await self._db.close()

    async def add_range(self, r: CodeRange, *, source: RangeSource = "cloud") -> None:
        """Add a range (a re-download of a known prefix keeps its ``next``)."""
        await self._db.call(lambda c: _upsert(c, r, source), op="triggers.add_range")

    async def codes_left(self, engine_code: str, *, now_ms: int) -> int:
        """Codes still issuable for ``engine_code`` (from cloud ranges once there are any)."""
        def run(c: sqlite3.Connection) -> int:
            row = c.execute("SELECT COALESCE(SUM(end_ - next), 0) FROM code_ranges WHERE "
                            f"engine_code = ? AND expires_ms > ? AND {_ISSUABLE}",
                            (engine_code, now_ms)).fetchone()
            return int(row[0])

        return await self._db.call(run, op="triggers.codes_left")

    async def issue(self, *, issue_id: str, engine_code: str, rule_id: str, who: str, day: int,
                    cart_id: str, session_id: str | None, member_id: str | None,
                    issued_ms: int, expires_ms: int) -> tuple[IssuedCoupon, bool]:
        """The coupon for ``issue_id`` and whether it is new. ``NoCodesLeft`` when no
        range of ``engine_code`` has a code left."""
        cloud = tuple(self._cloud_ranges()) if self._cloud_ranges is not None else ()
        changed = cloud if cloud != self._synced else ()

        def run(c: sqlite3.Connection) -> tuple[IssuedCoupon, bool] | None:
            c.execute("BEGIN IMMEDIATE")
            for r in changed:  # the till's allocation, before the code is taken
                _upsert(c, r, "cloud")
            row = c.execute(f"SELECT {_COLS} FROM issued WHERE issue_id = ?",
                            (issue_id,)).fetchone()
            if row is not None:
                c.execute("COMMIT")
                return _row(row), False
            rng = c.execute("SELECT prefix, next FROM code_ranges WHERE engine_code = ? AND "
                            f"next < end_ AND expires_ms > ? AND {_ISSUABLE} "
                            "ORDER BY expires_ms, prefix LIMIT 1",
                            (engine_code, issued_ms)).fetchone()
            if rng is None:
                c.execute("COMMIT")  # the synced ranges stay
                return None
            prefix, n = rng
            code = f"{prefix}{n:06d}"
            c.execute("UPDATE code_ranges SET next = next + 1 WHERE prefix = ?", (prefix,))
            c.execute(f"INSERT INTO issued({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,0,NULL)",
                      (issue_id, code, engine_code, rule_id, who, day, cart_id, session_id,
                       member_id, issued_ms, expires_ms))
            c.execute("COMMIT")
            return IssuedCoupon(issue_id, code, engine_code, rule_id, who, day, cart_id,
                                session_id, member_id, issued_ms, expires_ms), True

        result = await self._db.call(run, op="triggers.issue")
        if changed:
            self._synced = cloud
        if result is None:
            raise NoCodesLeft(engine_code)
        return result

    async def mark_evented(self, issue_id: str) -> None:
        await self._db.call(lambda c: c.execute("UPDATE issued SET evented = 1 WHERE "
                                                "issue_id = ?", (issue_id,)),
                            op="triggers.mark_evented")

    async def not_evented(self) -> list[IssuedCoupon]:
        return await self._select("WHERE evented = 0 ORDER BY issued_ms", ())

    async def of_day(self, day: int) -> list[IssuedCoupon]:
        return await self._select("WHERE day >= ? ORDER BY issued_ms", (day,))

    async def by_code(self, code: str) -> IssuedCoupon | None:
        rows = await self._select("WHERE code = ?", (code,))
        return rows[0] if rows else None

    async def for_member(self, member_id: str) -> list[IssuedCoupon]:
        return await self._select("WHERE member_id = ? ORDER BY issued_ms", (member_id,))

    async def for_session(self, session_id: str) -> list[IssuedCoupon]:
        return await self._select("WHERE session_id = ? ORDER BY issued_ms", (session_id,))

    async def redeem(self, code: str, *, now_ms: int) -> bool:
        """Mark ``code`` used; False if unknown, expired or already used."""

        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute("UPDATE issued SET redeemed_ms = ? WHERE code = ? AND redeemed_ms "
                            "IS NULL AND expires_ms > ?", (now_ms, code, now_ms))
            return cur.rowcount == 1

        return await self._db.call(run, op="triggers.redeem")

    async def redeem_all(self, codes: Sequence[str], *, now_ms: int) -> bool:
        """Mark every one of ``codes`` used, or none (one unknown, expired or already used:
        False, nothing changed): a payment that counted them all needs them all."""

        def run(c: sqlite3.Connection) -> bool:
            c.execute("BEGIN IMMEDIATE")
            for code in dict.fromkeys(codes):
                cur = c.execute("UPDATE issued SET redeemed_ms = ? WHERE code = ? AND "
                                "redeemed_ms IS NULL AND expires_ms > ?", (now_ms, code, now_ms))
                if cur.rowcount != 1:
                    c.execute("ROLLBACK")
                    return False
            c.execute("COMMIT")
            return True

        return await self._db.call(run, op="triggers.redeem_all")

    async def _select(self, where: str, args: tuple[object, ...]) -> list[IssuedCoupon]:
        def run(c: sqlite3.Connection) -> list[IssuedCoupon]:
            return [_row(r) for r in c.execute(f"SELECT {_COLS} FROM issued {where}", args)]

        return await self._db.call(run, op="triggers.select")
