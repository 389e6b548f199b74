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
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.inference.triggers.errors import NoCodesLeft
from edge_agent.storage import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS code_ranges (
    prefix      TEXT PRIMARY KEY,
    engine_code TEXT NOT NULL,
    start       INTEGER NOT NULL,
    end_        INTEGER NOT NULL,
    next        INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL
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


@dataclass(frozen=True, slots=True)
class CodeRange:
    """Codes ``{prefix}{n:06d}`` for ``start <= n < end`` (same shape as the cloud's)."""

    start: int
    end: int
    prefix: str
    engine_code: str
    expires_ms: int

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


class CouponLedger:
    """Code ranges and issued coupons in ``{data_dir}/triggers.db``."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self._db = Database(path, synchronous=synchronous)

    async def open(self) -> None:
        await self._db.open()
        await self._db.call(lambda c: c.executescript(_SCHEMA), op="triggers.schema")

    async def close(self) -> None:
        await self._db.close()

    async def add_range(self, r: CodeRange) -> None:
        """Add a range (a re-download of a known prefix keeps its ``next``)."""
        if not 0 <= r.start < r.end:
            raise ValueError(f"bad code range {r.start}..{r.end}")

        def run(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO code_ranges(prefix, engine_code, start, end_, next, "
                      "expires_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(prefix) DO UPDATE SET "
                      "end_ = MAX(end_, excluded.end_), expires_ms = excluded.expires_ms",
                      (r.prefix, r.engine_code, r.start, r.end, r.start, r.expires_ms))

        await self._db.call(run, op="triggers.add_range")

    async def codes_left(self, engine_code: str, *, now_ms: int) -> int:
        def run(c: sqlite3.Connection) -> int:
            row = c.execute("SELECT COALESCE(SUM(end_ - next), 0) FROM code_ranges WHERE "
                            "engine_code = ? AND expires_ms > ?", (engine_code, now_ms)).fetchone()
            return int(row[0])

        return await self._db.call(run, op="triggers.codes_left")

    async def issue(self, *, issue_id: str, engine_code: str, rule_id: str, who: str, day: int,
                    cart_id: str, session_id: str | None, member_id: str | None,
                    issued_ms: int, expires_ms: int) -> tuple[IssuedCoupon, bool]:
        """The coupon for ``issue_id`` and whether it is new. ``NoCodesLeft`` when no
        range of ``engine_code`` has a code left."""

        def run(c: sqlite3.Connection) -> tuple[IssuedCoupon, bool] | None:
            c.execute("BEGIN IMMEDIATE")
            row = c.execute(f"SELECT {_COLS} FROM issued WHERE issue_id = ?",
                            (issue_id,)).fetchone()
            if row is not None:
                c.execute("COMMIT")
                return _row(row), False
            rng = c.execute("SELECT prefix, next FROM code_ranges WHERE engine_code = ? AND "
                            "next < end_ AND expires_ms > ? ORDER BY expires_ms, prefix LIMIT 1",
                            (engine_code, issued_ms)).fetchone()
            if rng is None:
                c.execute("ROLLBACK")
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

    async def _select(self, where: str, args: tuple[object, ...]) -> list[IssuedCoupon]:
        def run(c: sqlite3.Connection) -> list[IssuedCoupon]:
            return [_row(r) for r in c.execute(f"SELECT {_COLS} FROM issued {where}", args)]

        return await self._db.call(run, op="triggers.select")
