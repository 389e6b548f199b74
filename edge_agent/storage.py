"""The agent's SQLite database, run on one dedicated thread.

sqlite3 calls block (a commit with ``synchronous=FULL`` waits for fsync), so every call
goes through ``Database.call`` to a single-worker executor that owns the connection:
the event loop never blocks, and all statements are serialised without extra locks.

The outbox (``uplink.outbox``) and the small ``KvStore`` below share this one database
file (``outbox.db``), so that e.g. a ``bd_seq`` increment is as durable as an event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.errors import StorageError
from protocols.business import topic_low_value

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: never reused, even when empty
    id         TEXT NOT NULL UNIQUE,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    low_value  INTEGER NOT NULL DEFAULT 0  -- 1: may be dropped when full (decision 0025)
);
CREATE TABLE IF NOT EXISTS kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_cmds (
    cmd_id  TEXT PRIMARY KEY,
    seen_ms INTEGER NOT NULL
);
"""


class Database:
    """One SQLite connection on one thread; ``await db.call(fn)`` runs ``fn(conn)`` there."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self.call_raw(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so one batch = one transaction.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")  # a second process (a CLI peek) may hold a lock
        conn.executescript(_SCHEMA)
        _add_low_value_column(conn)
        # The full outbox drops its oldest low-value rows: find them without a scan.
        conn.execute(
            "CREATE INDEX IF NOT EXISTS rows_low_value ON rows(seq) WHERE low_value = 1"
        )
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            await self.call_raw(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def call_raw(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    async def call(self, fn: Callable[[sqlite3.Connection], T], *, op: str) -> T:
        """Run ``fn(conn)`` on the database thread; sqlite errors become ``StorageError``."""

        def run() -> T:
            if self._conn is None:
                raise StorageError(op, "database is closed")
            try:
                return fn(self._conn)
            except sqlite3.Error as err:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StorageError(op, str(err)) from err

        return await self.call_raw(run)


def _add_low_value_column(conn: sqlite3.Connection) -> None:
    """Outboxes written before decision 0025 lack ``low_value``: add it and classify
    the rows they hold by their topic's event kind (what is not an event is kept)."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(rows)")}
    if "low_value" in columns:
        return
    conn.create_function("sf_low_value", 1, _topic_low_value, deterministic=True)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("ALTER TABLE rows ADD COLUMN low_value INTEGER NOT NULL DEFAULT 0")
    changed = conn.execute(
        "UPDATE rows SET low_value = 1 WHERE sf_low_value(topic)"
    ).rowcount
    conn.execute("COMMIT")
    logger.info("outbox: added the low_value column; %d held rows are low-value", changed)


def _topic_low_value(topic: str) -> int:
    return int(topic_low_value(topic))


class KvStore:
    """Small persisted settings: ``bd_seq``, applied shadow, recent command ids."""

    def __init__(self, db: Database, *, max_seen_cmds: int = 1000) -> None:
        self._db = db
        self._max_seen_cmds = max_seen_cmds  # enough for hours of commands; ids are UUIDs

    async def get(self, key: str, default: Any = None) -> Any:
        def run(conn: sqlite3.Connection) -> Any:
            row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
            return default if row is None else json.loads(row[0])

        return await self._db.call(run, op="kv.get")

    async def set(self, key: str, value: Any) -> None:
        text = json.dumps(value, sort_keys=True)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO kv(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, text),
            )

        await self._db.call(run, op="kv.set")

    async def incr(self, key: str) -> int:
        """Add one to an integer (missing = 0) and return the new value, durably."""

        def run(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
            value = (int(json.loads(row[0])) if row else 0) + 1
            conn.execute(
                "INSERT INTO kv(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )
            conn.execute("COMMIT")
            return value

        return await self._db.call(run, op="kv.incr")

    async def remember_command(self, cmd_id: str, *, now_ms: int) -> bool:
        """Record ``cmd_id``; False if it was already seen (a redelivery)."""
        limit = self._max_seen_cmds

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute(
                "INSERT OR IGNORE INTO seen_cmds(cmd_id, seen_ms) VALUES (?, ?)", (cmd_id, now_ms)
            )
            fresh = cur.rowcount == 1
            if fresh:
                conn.execute(
                    "DELETE FROM seen_cmds WHERE cmd_id NOT IN "
                    "(SELECT cmd_id FROM seen_cmds ORDER BY seen_ms DESC, rowid DESC LIMIT ?)",
                    (limit,),
                )
            conn.execute("COMMIT")
            return fresh

        return await self._db.call(run, op="kv.remember_command")
