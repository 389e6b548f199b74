"""A store's price book on the wire: a small signed header and a zstd-compressed body
(decision 0047).

The header is a ``SnapshotSigner`` document (canonical JSON, Ed25519) whose payload is::

    {kind: "storefleet.pricebook.wire", store_id, version, base_version, effective_ms,
     published_ms, currency, format, body_sha256, body_size, items, upserts, removals}

``base_version`` is None for a full book; for a delta it is the version the changes
apply on top of. The signature covers the body through ``body_sha256`` and
``body_size``: the box hashes the bytes it downloaded and never re-canonicalises a
million items.

The body (``format`` = ``columns+zstd``) is zstd of lines of compact JSON, each at most
``CHUNK_ROWS`` rows: ``{"upsert": {"sku": [...], "name": [...], "category": [...],
"price": [...], "earns_points": [...]}}`` for the items (sorted by sku), then
``{"remove": [sku, ...]}`` for the removals. Columns rather than one object per item:
``json`` encodes and decodes a few lists in C, and like fields side by side compress
better. Lines of bounded size rather than one document: the box parses one line at a
time, so no single ``json.loads`` holds the GIL for long while the till is selling
(a million SKUs in one document: half a second).

Pure: no database, no I/O; ``cloud.pricebook.service`` gives it the items.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import zstandard

from cloud.promotions.signing import SnapshotSigner

HEADER_KIND = "storefleet.pricebook.wire"
FORMAT = "columns+zstd"
FIELDS = ("sku", "name", "category", "price", "earns_points")
# Level 3 is zstd's default: a million SKUs compress in well under a second; higher
# levels cost seconds of cloud time per store for a few percent of bytes.
ZSTD_LEVEL = 3
# Rows per line of the body: ~600 KB of JSON, a few milliseconds to parse at the box
# (each json.loads holds the GIL while the till waits).
CHUNK_ROWS = 10_000

ItemDict = Mapping[str, Any]  # pricing.Item as JSON: sku, name, category, price, earns_points


@dataclass(frozen=True)
class WireBook:
    """One signed header and the body it vouches for."""

    header: dict[str, Any]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        return dict(self.header["payload"])


def _columns(items: Iterable[ItemDict]) -> dict[str, list[Any]]:
    rows = sorted(items, key=lambda i: str(i["sku"]))
    return {
        "sku": [i["sku"] for i in rows],
        "name": [i.get("name", "") for i in rows],
        "category": [i.get("category", "") for i in rows],
        "price": [i["price"] for i in rows],
        "earns_points": [i.get("earns_points", True) for i in rows],
    }


def encode_body(upserts: Iterable[ItemDict], removals: Iterable[str] = ()) -> bytes:
    rows, gone = sorted(upserts, key=lambda i: str(i["sku"])), sorted(removals)
    lines: list[dict[str, Any]] = [{"upsert": _columns(rows[i:i + CHUNK_ROWS])}
                                   for i in range(0, len(rows), CHUNK_ROWS)]
    lines += [{"remove": gone[i:i + CHUNK_ROWS]} for i in range(0, len(gone), CHUNK_ROWS)]
    raw = b"\n".join(json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode()
                     for line in lines)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw)


def diff(old: Mapping[str, ItemDict], new: Mapping[str, ItemDict]
         ) -> tuple[list[ItemDict], list[str]]:
    """The upserts and removals that turn book ``old`` into book ``new`` (sku -> item)."""
    upserts = [item for sku, item in new.items() if old.get(sku) != item]
    removals = [sku for sku in old if sku not in new]
    return upserts, removals


def build(signer: SnapshotSigner, *, store_id: str, version: int, currency: str,
          effective_ms: int, published_ms: int, items: Mapping[str, ItemDict],
          base: tuple[int, Mapping[str, ItemDict]] | None = None) -> WireBook:
    """The signed full book (``base`` None) or the delta from ``base`` = (version, items)."""
    upserts: list[ItemDict]
    removals: list[str]
    if base is None:
        upserts, removals = list(items.values()), []
    else:
        upserts, removals = diff(base[1], items)
    body = encode_body(upserts, removals)
    payload = {
        "kind": HEADER_KIND, "store_id": store_id, "version": version,
        "base_version": None if base is None else base[0], "effective_ms": effective_ms,
        "published_ms": published_ms, "currency": currency, "format": FORMAT,
        "body_sha256": hashlib.sha256(body).hexdigest(), "body_size": len(body),
        "items": len(items), "upserts": len(upserts), "removals": len(removals),
    }
    return WireBook(header=signer.sign(payload), body=body)


class WireCache:
    """The last books built, by (store, version, base): the header and the body a box
    then downloads are one build, and a thousand stores polling the same version do
    not rebuild it each. Bounded by total body bytes (a million SKUs: ~10 MB each)."""

    def __init__(self, *, max_bytes: int = 128 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._books: OrderedDict[tuple[str, int, int | None], WireBook] = OrderedDict()
        self._lock = threading.Lock()  # routes run in the threadpool

    def get(self, key: tuple[str, int, int | None],
            build: Callable[[], WireBook]) -> WireBook:
        with self._lock:
            book = self._books.get(key)
            if book is not None:
                self._books.move_to_end(key)
                return book
        book = build()  # outside the lock: two builds of one key give the same bytes
        with self._lock:
            self._books[key] = book
            while sum(len(b.body) for b in self._books.values()) > self._max_bytes \
                    and len(self._books) > 1:
                self._books.popitem(last=False)
        return book
