"""The box's applied price book: one SQLite database the till, the carts and the labels
read through (decision 0047).

Tables: ``book`` (sku -> name, category, price, earns_points) and ``meta`` (one row:
version, currency, effective_ms, published_ms, book_hash).

``book_hash`` identifies the applied content: sha256 of ``full:<body sha256>`` for a
full book, of ``<previous book_hash>:<body sha256>`` after a delta (the bodies are what
the cloud signed). It is the ``catalog_hash`` the pricing engine records on each sale
of this book: the canonical-JSON sha256 of a million items would cost seconds per
delta, and the cloud re-prices a sale from the items it records, not from this hash.

Every change is one SQLite transaction, so a ``kill -9`` at any point leaves the old
book or the new one, never a mix:

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

import hashlib
import sqlite3
import threading
from collections.abc import ItemsView, Iterable, Iterator, Mapping, Sequence
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
    published_ms INTEGER NOT NULL, book_hash TEXT NOT NULL);
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
    book_hash: str
    items: int


@dataclass(frozen=True)
class Header:
    """What a change needs of a verified wire header (``cloud.pricebook.wire``)."""

    version: int
    base_version: int | None
    currency: str
    effective_ms: int
    published_ms: int
    body_sha256: str


def rows_of(columns: dict[str, Sequence[Any]]) -> Iterator[Row]:
    """The body's columns as table rows."""
    return zip(columns["sku"], columns["name"], columns["category"], columns["price"],
               columns["earns_points"], strict=True)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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
            row = db.execute("SELECT version, currency, effective_ms, published_ms, "
                             "book_hash FROM meta WHERE id = 1").fetchone()
            if row is None:
                return None
            (count,) = db.execute("SELECT count(*) FROM book").fetchone()
        return BookState(version=row[0], currency=row[1], effective_ms=row[2],
                         published_ms=row[3], book_hash=row[4], items=count)

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
                self._set_meta(db, header, _sha(f"full:{header.body_sha256}"))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return count

    def apply_delta(self, header: Header, upserts: Iterable[Row], removals: Sequence[str], *,
                    chunk: int = CHUNK) -> list[str]:
        """Apply changes on top of ``header.base_version``; the skus changed (upserted,
        then removed). ``removals`` is read once the upserts are consumed (the body
        streams them after the items)."""
        changed: list[str] = []
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT version, book_hash FROM meta WHERE id = 1").fetchone()
                installed = None if row is None else int(row[0])
                if header.base_version is None or installed != header.base_version:
                    raise BaseMismatch(base=header.base_version or 0, installed=installed)
                for part in _chunks(upserts, chunk):
                    db.executemany("INSERT OR REPLACE INTO book VALUES (?, ?, ?, ?, ?)", part)
                    changed.extend(r[0] for r in part)
                for i in range(0, len(removals), chunk):
                    db.executemany("DELETE FROM book WHERE sku = ?",
                                   [(s,) for s in removals[i:i + chunk]])
                changed.extend(removals)
                self._set_meta(db, header, _sha(f"{row[1]}:{header.body_sha256}"))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return changed

    @staticmethod
    def _set_meta(db: sqlite3.Connection, header: Header, book_hash: str) -> None:
        db.execute("INSERT OR REPLACE INTO meta VALUES (1, ?, ?, ?, ?, ?)",
                   (header.version, header.currency, header.effective_ms,
                    header.published_ms, book_hash))

    def items(self, skus: Iterable[str] | None = None) -> dict[str, Item]:
        """sku -> item of the applied book (all, or those of ``skus`` that exist)."""
        with self._connect() as db:
            if skus is None:
                rows = db.execute(f"{_SELECT} ORDER BY sku").fetchall()
            else:
                wanted = list(skus)
                rows = []
                for i in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
                    part = wanted[i:i + 500]
                    rows += db.execute(f"{_SELECT} WHERE sku IN "
                                       f"({','.join('?' * len(part))})", part).fetchall()
        return {r[0]: _item(r) for r in rows}

    def catalog(self) -> Catalog | None:
        """The applied book as the pricing engine's ``Catalog``, its items read from this
        database on demand (``BookItems``): nothing of a million items is loaded."""
        state = self.state()
        if state is None:
            return None
        catalog = Catalog.model_construct(version=state.version, currency=state.currency,
                                          items=BookItems(self.path, size=state.items))
        # Catalog.ruleset_hash is a cached_property: the book's hash, not the canonical
        # JSON of every item (see book_hash above).
        catalog.__dict__["_hash"] = state.book_hash
        return catalog


_SELECT = "SELECT sku, name, category, price, earns_points FROM book"


def _item(r: tuple[Any, ...]) -> Item:
    # model_construct: the rows were validated on the way in (the cloud's publish, the
    # signed header, the typed columns of the table).
    return Item.model_construct(sku=r[0], name=r[1], category=r[2], price=r[3],
                                earns_points=bool(r[4]))


class BookItems(Mapping[str, Item]):
    """``Catalog.items`` of the applied book, read from SQLite by sku: a sale looks up
    its few skus (~20 us each) instead of the box holding a million ``Item`` objects,
    which cost seconds to build and garbage-collector pauses the till would feel.

    Read-only connection per thread (the till on the loop, the shelf sync in a worker);
    WAL: a read sees the last committed book. ``size``: counted when the catalog was
    made (a ``len`` that does not scan)."""

    def __init__(self, path: Path, *, size: int) -> None:
        self._path = path
        self._size = size
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True,
                                 check_same_thread=True)
            self._local.db = db
        return db

    def __getitem__(self, sku: str) -> Item:
        row = self._db().execute(f"{_SELECT} WHERE sku = ?", (sku,)).fetchone()
        if row is None:
            raise KeyError(sku)
        return _item(row)

    def __iter__(self) -> Iterator[str]:
        for (sku,) in self._db().execute("SELECT sku FROM book ORDER BY sku"):
            yield sku

    def __len__(self) -> int:
        return self._size

    def items(self) -> ItemsView[str, Item]:
        return _Rows(self)


class _Rows(ItemsView[str, Item]):
    """``items()`` in one scan rather than a lookup per key."""

    _mapping: BookItems

    def __iter__(self) -> Iterator[tuple[str, Item]]:
        for row in self._mapping._db().execute(f"{_SELECT} ORDER BY sku"):
            yield row[0], _item(row)
