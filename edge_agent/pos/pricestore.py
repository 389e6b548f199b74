"""The box's applied price book: one SQLite database the till, the carts and the labels
read through (decision 0047).

Tables: ``book`` (sku -> name, category, price, earns_points) and ``meta`` (one row:
version, currency, effective_ms, published_ms). Every change is one SQLite transaction,
so a ``kill -9`` at any point leaves the old book or the new one, never a mix:

- a full book is written into ``book_next`` and swapped in (``DROP book``, ``ALTER
  TABLE book_next RENAME TO book``, the meta row) in the same transaction; the rows go
  in chunks (``CHUNK``) so the Python thread running it lets go of the GIL between them;
- a delta is one transaction of upserts and deletes, and only on top of its base: the
  meta row's version must equal ``base_version`` (``BaseMismatch`` otherwise, and the
  caller fetches the full book).

Blocking: call it from a worker thread (``asyncio.to_thread``). Each call opens its own
connection (WAL: readers never wait for the writer and see the committed book only),
so the loop's reads and the worker's writes never share one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pricing import Catalog, Item

# Rows per executemany: ~20 ms of inserts on this machine, so a till sale waiting for
# the GIL waits at most about that long (bench: max_till_pause_ms).
CHUNK = 20_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS book (sku TEXT PRIMARY KEY, name TEXT NOT NULL,
    category TEXT NOT NULL, price INTEGER NOT NULL, earns_points INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL, currency TEXT NOT NULL, effective_ms INTEGER NOT NULL,
    published_ms INTEGER NOT NULL);
"""
_NEXT = ("CREATE TABLE book_next (sku TEXT PRIMARY KEY, name TEXT NOT NULL, "
         "category TEXT NOT NULL, price INTEGER NOT NULL, earns_points INTEGER NOT NULL) "
         "WITHOUT ROWID")

Row = tuple[str, str, str, int, bool]


class PriceStoreError(Exception):
    """The applied book could not change (``BaseMismatch``)."""


class BaseMismatch(PriceStoreError):
    def __init__(self, *, base: int, installed: int | None) -> None:
        super().__init__(f"delta on version {base}, but version {installed} is applied")
        self.base = base
        self.installed = installed


@dataclass(frozen=True)
class BookState:
    version: int
    currency: str
    effective_ms: int
    published_ms: int
    items: int


@dataclass(frozen=True)
class Header:
    """What a change needs of a verified wire header (``cloud.pricebook.wire``)."""

    version: int
    base_version: int | None
    currency: str
    effective_ms: int
    published_ms: int


def rows_of(columns: dict[str, Sequence[Any]]) -> Iterator[Row]:
    """The body's columns as table rows."""
    return zip(columns["sku"], columns["name"], columns["category"], columns["price"],
               columns["earns_points"], strict=True)


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class PriceStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            # A full apply killed before its commit leaves nothing of book_next behind
            # (it was created in that transaction); this only guards older layouts.
            db.execute("DROP TABLE IF EXISTS book_next")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: transactions are the explicit BEGIN/COMMIT below.
        with closing(sqlite3.connect(self.path, isolation_level=None, timeout=30)) as db:
            # WAL + NORMAL: a committed transaction survives the process being killed
            # (not a power cut, which a later full book repairs).
            db.execute("PRAGMA synchronous=NORMAL")
            yield db

    def state(self) -> BookState | None:
        with self._connect() as db:
            row = db.execute("SELECT version, currency, effective_ms, published_ms "
                             "FROM meta WHERE id = 1").fetchone()
            if row is None:
                return None
            (count,) = db.execute("SELECT count(*) FROM book").fetchone()
        return BookState(version=row[0], currency=row[1], effective_ms=row[2],
                         published_ms=row[3], items=count)

    def apply_full(self, header: Header, rows: Iterable[Row], *, chunk: int = CHUNK) -> int:
        """Replace the book; the number of items. One transaction."""
        count = 0
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DROP TABLE IF EXISTS book_next")
                db.execute(_NEXT)
                for part in _chunks(rows, chunk):
                    db.executemany("INSERT INTO book_next VALUES (?, ?, ?, ?, ?)", part)
                    count += len(part)
                db.execute("DROP TABLE book")
                db.execute("ALTER TABLE book_next RENAME TO book")
                self._set_meta(db, header)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return count

    def apply_delta(self, header: Header, upserts: Iterable[Row], removals: Sequence[str], *,
                    chunk: int = CHUNK) -> list[str]:
        """Apply changes on top of ``header.base_version``; the skus changed."""
        changed: list[str] = list(removals)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT version FROM meta WHERE id = 1").fetchone()
                installed = None if row is None else int(row[0])
                if header.base_version is None or installed != header.base_version:
                    raise BaseMismatch(base=header.base_version or 0, installed=installed)
                for part in _chunks(upserts, chunk):
                    db.executemany("INSERT OR REPLACE INTO book VALUES (?, ?, ?, ?, ?)", part)
                    changed.extend(r[0] for r in part)
                for i in range(0, len(removals), chunk):
                    db.executemany("DELETE FROM book WHERE sku = ?",
                                   [(s,) for s in removals[i:i + chunk]])
                self._set_meta(db, header)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return changed

    @staticmethod
    def _set_meta(db: sqlite3.Connection, header: Header) -> None:
        db.execute("INSERT OR REPLACE INTO meta VALUES (1, ?, ?, ?, ?)",
                   (header.version, header.currency, header.effective_ms,
                    header.published_ms))

    def items(self, skus: Iterable[str] | None = None) -> dict[str, Item]:
        """sku -> item of the applied book (all, or those of ``skus`` that exist).

        ``model_construct``: the rows were validated on the way in (the cloud's publish,
        the signed header, the typed columns); re-validating a million items would cost
        seconds."""
        with self._connect() as db:
            if skus is None:
                cursor = db.execute("SELECT sku, name, category, price, earns_points "
                                    "FROM book")
                rows = cursor.fetchall()
            else:
                wanted = list(skus)
                rows = []
                for i in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
                    part = wanted[i:i + 500]
                    rows += db.execute(
                        "SELECT sku, name, category, price, earns_points FROM book "
                        f"WHERE sku IN ({','.join('?' * len(part))})", part).fetchall()
        construct = Item.model_construct
        return {r[0]: construct(sku=r[0], name=r[1], category=r[2], price=r[3],
                                earns_points=bool(r[4])) for r in rows}

    def catalog(self, base: Catalog | None = None, *,
                changed: Sequence[str] | None = None) -> Catalog | None:
        """The applied book as the pricing engine's ``Catalog``: read whole, or (``base``
        and the skus ``changed`` since it) patched."""
        state = self.state()
        if state is None:
            return None
        if base is None or changed is None:
            items = self.items()
        else:
            items = dict(base.items)
            fresh = self.items(changed)
            for sku in changed:
                if sku in fresh:
                    items[sku] = fresh[sku]
                else:
                    items.pop(sku, None)
        return Catalog.model_construct(version=state.version, currency=state.currency,
                                       items=items)
