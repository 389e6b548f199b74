"""The POS's own SQLite file (``{data_dir}/pos.db``): sales, returns, used coupon codes,
offline spending per card and day, and received online orders.

It runs on ``edge_agent.storage.Database`` (one dedicated thread, WAL, fsync per
commit), so the event loop never blocks. Sales are written here *before* their events
go to the outbox, with ``emitted = 0``; ``pending_sales()`` lets the POS re-emit them
after a crash between the two writes (the outbox drops an id it already has).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.storage import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pos_sales (
    sale_id  TEXT PRIMARY KEY,
    ts       INTEGER NOT NULL,
    member_id TEXT,
    priced   TEXT NOT NULL,          -- pricing.PricedBasket JSON: the stored allocation
    events   TEXT NOT NULL,          -- [[kind, event id, data], ...] still to emit
    emitted  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pos_returns (
    refund_id TEXT NOT NULL,
    sale_id   TEXT NOT NULL,
    line_id   TEXT NOT NULL,
    qty       INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    PRIMARY KEY (refund_id, line_id)
);
CREATE INDEX IF NOT EXISTS ix_pos_returns_sale ON pos_returns(sale_id);
CREATE TABLE IF NOT EXISTS pos_used_codes (
    code    TEXT PRIMARY KEY,        -- single use at this store, enforced by the key
    sale_id TEXT NOT NULL,
    ts      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pos_offline_spend (
    member_id    TEXT NOT NULL,
    day          INTEGER NOT NULL,   -- store-local day number since the epoch
    points       INTEGER NOT NULL DEFAULT 0,
    stored_value INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (member_id, day)
);
CREATE TABLE IF NOT EXISTS pos_orders (
    order_id TEXT PRIMARY KEY,
    status   TEXT NOT NULL,
    doc      TEXT NOT NULL,
    printed  INTEGER NOT NULL DEFAULT 0,
    ts       INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class StoredOrder:
    order_id: str
    status: str
    doc: dict[str, Any]
    printed: bool


class PosLedger:
    def __init__(self, path: Path) -> None:
        self._db = Database(path)

    async def open(self) -> None:
        await self._db.open()
        await self._db.call(lambda c: c.executescript(_SCHEMA), op="pos.schema")

    async def close(self) -> None:
        await self._db.close()

    # ---- sales ------------------------------------------------------------------------

    async def record_sale(self, sale_id: str, *, ts: int, member_id: str | None, priced: str,
                          events: list[tuple[str, str, dict[str, Any]]],
                          codes: list[str]) -> None:
        """The sale, its pending events and the codes it used, in one transaction.
        A code already used here makes the whole sale fail (``StorageError``)."""
        doc = json.dumps(events, sort_keys=True)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO pos_sales(sale_id, ts, member_id, priced, events) "
                         "VALUES (?, ?, ?, ?, ?)", (sale_id, ts, member_id, priced, doc))
            conn.executemany("INSERT INTO pos_used_codes(code, sale_id, ts) VALUES (?, ?, ?)",
                             [(code, sale_id, ts) for code in codes])
            conn.execute("COMMIT")

        await self._db.call(run, op="pos.record_sale")

    async def mark_emitted(self, sale_id: str) -> None:
        await self._db.call(lambda c: c.execute(
            "UPDATE pos_sales SET emitted = 1 WHERE sale_id = ?", (sale_id,)),
            op="pos.mark_emitted")

    async def pending_sales(self) -> list[tuple[str, list[tuple[str, str, dict[str, Any]]]]]:
        rows = await self._db.call(lambda c: c.execute(
            "SELECT sale_id, events FROM pos_sales WHERE emitted = 0 ORDER BY ts, sale_id"
        ).fetchall(), op="pos.pending_sales")
        return [(sid, [tuple(e) for e in json.loads(ev)]) for sid, ev in rows]  # type: ignore[misc]

    async def sale(self, sale_id: str) -> tuple[str, str | None] | None:
        """(priced JSON, member id) of a stored sale."""
        row = await self._db.call(lambda c: c.execute(
            "SELECT priced, member_id FROM pos_sales WHERE sale_id = ?", (sale_id,)).fetchone(),
            op="pos.sale")
        return None if row is None else (row[0], row[1])

    async def sale_number(self, sale_id: str) -> int | None:
        """The sale's number at this till, 1, 2, ... in the order recorded (the table's
        rowid: sales are never deleted and the file is never vacuumed, so it stays)."""
        row = await self._db.call(lambda c: c.execute(
            "SELECT rowid FROM pos_sales WHERE sale_id = ?", (sale_id,)).fetchone(),
            op="pos.sale_number")
        return None if row is None else int(row[0])

    async def returned(self, sale_id: str) -> dict[str, int]:
        rows = await self._db.call(lambda c: c.execute(
            "SELECT line_id, SUM(qty) FROM pos_returns WHERE sale_id = ? GROUP BY line_id",
            (sale_id,)).fetchall(), op="pos.returned")
        return {line_id: int(qty) for line_id, qty in rows}

    async def record_return(self, refund_id: str, sale_id: str, lines: Mapping[str, int], *,
                            ts: int) -> None:
        await self._db.call(lambda c: c.executemany(
            "INSERT INTO pos_returns(refund_id, sale_id, line_id, qty, ts) VALUES (?,?,?,?,?)",
            [(refund_id, sale_id, lid, qty, ts) for lid, qty in lines.items()]),
            op="pos.record_return")

    async def code_used(self, code: str) -> bool:
        row = await self._db.call(lambda c: c.execute(
            "SELECT 1 FROM pos_used_codes WHERE code = ?", (code,)).fetchone(),
            op="pos.code_used")
        return row is not None

    # ---- offline spending caps --------------------------------------------------------------

    async def spent(self, member_id: str, day: int) -> tuple[int, int]:
        row = await self._db.call(lambda c: c.execute(
            "SELECT points, stored_value FROM pos_offline_spend WHERE member_id = ? AND day = ?",
            (member_id, day)).fetchone(), op="pos.spent")
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    async def add_spent(self, member_id: str, day: int, *, points: int,
                        stored_value: int) -> None:
        await self._db.call(lambda c: c.execute(
            "INSERT INTO pos_offline_spend(member_id, day, points, stored_value) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(member_id, day) DO UPDATE SET "
            "points = points + excluded.points, "
            "stored_value = stored_value + excluded.stored_value",
            (member_id, day, points, stored_value)), op="pos.add_spent")

    # ---- online orders ------------------------------------------------------------------------

    async def remember_order(self, order_id: str, doc: dict[str, Any], *, ts: int) -> StoredOrder:
        """Insert the order if new; return what is stored (a redelivery finds it)."""
        text = json.dumps(doc, sort_keys=True)

        def run(conn: sqlite3.Connection) -> tuple[str, str, int]:
            conn.execute("INSERT OR IGNORE INTO pos_orders(order_id, status, doc, ts) "
                         "VALUES (?, 'placed', ?, ?)", (order_id, text, ts))
            row = conn.execute("SELECT status, doc, printed FROM pos_orders WHERE order_id = ?",
                               (order_id,)).fetchone()
            return row[0], row[1], row[2]

        status, stored, printed = await self._db.call(run, op="pos.remember_order")
        return StoredOrder(order_id, status, json.loads(stored), bool(printed))

    async def order(self, order_id: str) -> StoredOrder | None:
        row = await self._db.call(lambda c: c.execute(
            "SELECT status, doc, printed FROM pos_orders WHERE order_id = ?",
            (order_id,)).fetchone(), op="pos.order")
        return None if row is None else StoredOrder(order_id, row[0], json.loads(row[1]),
                                                     bool(row[2]))

    async def set_order(self, order_id: str, *, status: str | None = None,
                        printed: bool | None = None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if status is not None:
                conn.execute("UPDATE pos_orders SET status = ? WHERE order_id = ?",
                             (status, order_id))
            if printed is not None:
                conn.execute("UPDATE pos_orders SET printed = ? WHERE order_id = ?",
                             (int(printed), order_id))

        await self._db.call(run, op="pos.set_order")
