"""Signed price books from the cloud, installed into the till's ``CatalogCache``.

The cloud pushes the store's book in a retained ``PriceBookAnnouncement`` on
``sf/v1/{store}/content/pricebook`` (inline, or a path to GET) and serves it at
``GET /api/v1/stores/{id}/price-book``. Whatever the route, the Ed25519 signature
(the promotion snapshot keys) is what is trusted:

- a bad signature or an untrusted key (``signature``), a book for another store
  (``store``), an older version than the installed one (``stale``) or a malformed book
  (``invalid``) is refused, counted in ``storefleet_pos_cache_refresh_total{what=
  "pricebook", result=<reason>}`` and logged; the installed book stays;
- an accepted book is written atomically twice: the signed document
  (``pricebook.json``, verified again at start) and the catalog the till prices with
  (``CatalogCache.install``); at start the newer of the two wins, so a crash between
  the writes loses nothing. Sales priced afterwards record its version
  (``PricedBasket.catalog_version``).

At scale (decision 0047) the book travels as a signed header and a zstd body
(``cloud.pricebook.wire``; ``GET .../price-book/wire?base=<applied version>``): the
header is verified like a document, the body by the sha256 and size the header signs,
and the book is applied into the box's SQLite ``PriceStore`` (one transaction, in
chunks; a full book by a child process, ``apply_full_in_child``; a delta in a worker
thread) before the till's catalog is swapped by reference. A delta
applies only on its base; on any other base the full book is fetched (counted
``result="base_mismatch"``). A tampered body is ``body_hash``. Small inline books
(the announcement's ``document``) are also written into the store, so the store is
always the applied book.

Effective time, on both paths: a verified book (wire header and body, or document)
whose ``effective_ms`` is still ahead is held (``pending``, counted ``result=
"pending"``) and applied by ``apply_due``, which the till's sync loop calls every
second whether or not the cloud answers. The held book is also written, as received
(the signed header or document, then the body), to ``pricebook.held`` with
``write_atomically``; ``load`` verifies it again and holds it, so a restart or a
``kill -9`` before its time still applies it at its time with the cloud unreachable.
A held book is dropped (and its file removed) once a book at least as new is applied
(``result="superseded"``), or when it cannot apply on the applied book.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from edge_agent.fsutil import write_atomically
from edge_agent.pos.cache import (
    CacheError,
    CacheMetrics,
    CatalogCache,
    CloudApi,
    _read,
    _write_atomic,
    verify,
)
from edge_agent.pos.pricestore import BaseMismatch, Header, PriceStore, Row, rows_of
from pricing import Catalog
from protocols import decode
from protocols.clock import Clock, SystemClock
from protocols.errors import ProtocolError
from protocols.messages import PriceBookAnnouncement

logger = logging.getLogger(__name__)

DOCUMENT_KIND = "storefleet.pricebook"  # cloud.pricebook.service.DOCUMENT_KIND


WIRE_KIND = "storefleet.pricebook.wire"  # cloud.pricebook.wire.HEADER_KIND
WIRE_FORMAT = "columns+zstd"
# The largest body the box downloads or inflates: a million SKUs are ~10 MB compressed
# and ~60 MB of JSON; 16x headroom for long names.
MAX_BODY_BYTES = 256 * 1024 * 1024
MAX_RAW_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True)
class WireBook:
    """A verified header (its payload) and the body it vouches for, still compressed."""

    payload: dict[str, Any]
    body: bytes

    @property
    def header(self) -> Header:
        p = self.payload
        return Header(version=p["version"], base_version=p["base_version"],
                      currency=p["currency"], effective_ms=p["effective_ms"],
                      published_ms=p["published_ms"], body_sha256=p["body_sha256"])


@dataclass(frozen=True)
class SignedBook:
    """A verified book as received: the signed wire header and the body it vouches for,
    or a signed document (``catalog`` set: the announcement's inline book, the document
    route). What ``pending`` holds until its effective time, persisted as received so
    that it is verified again at load."""

    signed: Mapping[str, Any]
    body: bytes = b""
    catalog: Catalog | None = None

    @property
    def payload(self) -> Mapping[str, Any]:
        payload: Mapping[str, Any] = self.signed["payload"]
        return payload

    @property
    def version(self) -> int:
        return int(self.payload["version"])

    @property
    def effective_ms(self) -> int:
        """When the store starts charging it; a document from a cloud that did not say:
        on arrival (0)."""
        return int(self.payload.get("effective_ms") or 0)

    @property
    def wire(self) -> WireBook:
        return WireBook(payload=dict(self.payload), body=self.body)

    def to_bytes(self) -> bytes:
        """The held file: the signed header or document as one JSON line, then the body
        (empty for a document). One file, so one rename commits both."""
        return json.dumps(self.signed, separators=(",", ":")).encode() + b"\n" + self.body


def _save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # a box with no book yet
    write_atomically(path, data)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class PriceBookCache:
    def __init__(self, path: Path, *, store_id: str, keys: Mapping[str, Ed25519PublicKey],
                 catalog: CatalogCache, metrics: CacheMetrics,
                 store: PriceStore | None = None, clock: Clock | None = None) -> None:
        self.path = path
        self.store_id = store_id
        self.keys = dict(keys)
        self.catalog = catalog
        self._metrics = metrics
        self.store = store
        self._clock = clock or SystemClock()
        self.pending: SignedBook | None = None  # verified, waiting for its effective time
        # ... and on disk, so that a restart before that time still applies it then
        self.held_path = path.with_name(f"{path.stem}.held")
        self.applied_ms: int | None = None  # when the running version was applied
        # skus the last apply changed (all of a full book: None); the labels follow them
        self.changed: list[str] | None = None
        self._deltas: list[tuple[int, int, list[str]]] = []  # (base, version, skus)
        self._listeners: list[Callable[[int, int], None]] = []

    def on_applied(self, callback: Callable[[int, int], None]) -> None:
        """``callback(version, applied_ms)`` after each book this cache applies, and now
        for the one it runs (loaded from disk: since now). The till reports it as the
        store's ``pricebook`` content part (decision 0050)."""
        self._listeners.append(callback)
        if self.version is not None:
            self._call(callback)

    def _announce(self) -> None:
        for callback in self._listeners:
            self._call(callback)

    def _call(self, callback: Callable[[int, int], None]) -> None:
        version = self.version
        assert version is not None
        if self.applied_ms is None:
            self.applied_ms = self._clock.now_ms()
        try:
            callback(version, self.applied_ms)
        except Exception:  # a listener's fault must not undo an applied book
            self._metrics.refresh.labels(what="pricebook", result="listener_failed").inc()
            logger.exception("price book v%d: a listener failed", version)

    @property
    def version(self) -> int | None:
        return None if self.catalog.catalog is None else self.catalog.catalog.version

    async def load(self) -> bool:
        """After ``CatalogCache.load``: use the cached signed book or the applied store,
        whichever is newer; then hold the held book again (verified again), and apply
        it if its time came while the box was down."""
        loaded = await self._load_document()
        if self.store is not None:
            state = await asyncio.to_thread(self.store.state)
            current = self.version
            if state is not None and (current is None or state.version > current):
                self.catalog.catalog = await asyncio.to_thread(self.store.catalog)
                loaded = True
        await self._restore_held()
        return await self.apply_due() or loaded

    async def _restore_held(self) -> None:
        data = await asyncio.to_thread(_read_bytes, self.held_path)
        if data is None:
            return
        try:
            book = await self._verify_held(data)
        except (CacheError, ValueError, KeyError, TypeError) as err:
            # Left on disk: a later hold replaces it and a later apply removes it (keys
            # fetched on first use are not known yet at load).
            self._metrics.refresh.labels(what="pricebook", result="bad_cache").inc()
            logger.error("held price book %s unusable: %s", self.held_path, err)
            return
        current = self.version
        if current is not None and book.version <= current:
            self.pending = book
            await self._drop_superseded()
            return
        self.pending = book
        logger.info("store %s: price book v%d held again from disk until %d",
                    self.store_id, book.version, book.effective_ms)

    async def _verify_held(self, data: bytes) -> SignedBook:
        head, _, body = data.partition(b"\n")
        signed = json.loads(head)
        payload = verify(signed, self.keys)
        if payload.get("kind") != WIRE_KIND:
            return SignedBook(signed=signed, catalog=self._verified_catalog(signed))
        self._check_header(payload)
        digest = await asyncio.to_thread(lambda: hashlib.sha256(body).hexdigest())
        if len(body) != payload["body_size"] or digest != payload["body_sha256"]:
            raise CacheError("body_hash", f"held body of v{payload['version']} is not the "
                                          "one its header signs")
        return SignedBook(signed=signed, body=body)

    async def _hold(self, book: SignedBook) -> None:
        """Keep a verified book until its effective time, in memory and on disk."""
        held = self.pending
        if held is not None and held.version >= book.version:
            self._metrics.refresh.labels(what="pricebook", result="unchanged").inc()
            return
        # Held before it is written: an apply finishing meanwhile sees a newer held book
        # and leaves the file alone (_drop_superseded).
        self.pending = book
        try:
            # fsync: blocking, off the loop
            await asyncio.to_thread(_save, self.held_path, book.to_bytes())
        except OSError as err:  # held in memory still: applied at its time unless restarted
            self._metrics.refresh.labels(what="pricebook", result="held_not_saved").inc()
            logger.error("store %s: held price book v%d not saved: %s", self.store_id,
                         book.version, err)
        self._metrics.refresh.labels(what="pricebook", result="pending").inc()
        logger.info("store %s: price book v%d held until %d", self.store_id, book.version,
                    book.effective_ms)

    async def _drop_superseded(self) -> None:
        """After an apply: a held book no newer than the applied one is dropped."""
        held, current = self.pending, self.version
        if held is not None and (current is None or held.version > current):
            return  # still ahead: keep it
        if held is not None:
            self.pending = None
            self._metrics.refresh.labels(what="pricebook", result="superseded").inc()
            logger.info("store %s: held price book v%d dropped: v%s is applied",
                        self.store_id, held.version, current)
        await asyncio.to_thread(self.held_path.unlink, missing_ok=True)

    async def _load_document(self) -> bool:
        text = await asyncio.to_thread(_read, self.path)
        if text is None:
            return False
        try:
            catalog = self._accept(json.loads(text))
        except (CacheError, ValueError) as err:
            self._metrics.refresh.labels(what="pricebook", result="bad_cache").inc()
            logger.error("cached price book %s unusable: %s", self.path, err)
            return False
        if catalog is not None:
            self.catalog.catalog = catalog
        return True

    async def install(self, document: Mapping[str, Any]) -> bool:
        """Verify and install a signed book; False if it is the installed version or
        is held until its ``effective_ms`` (as on the wire path).

        Raises ``CacheError`` (counted here) for anything refused."""
        try:
            catalog = self._accept(document)
        except CacheError as err:
            self._metrics.refresh.labels(what="pricebook", result=err.reason).inc()
            logger.warning("store %s: price book refused: %s", self.store_id, err)
            raise
        if catalog is None:
            self._metrics.refresh.labels(what="pricebook", result="unchanged").inc()
            return False
        book = SignedBook(signed=document, catalog=catalog)
        if book.effective_ms > self._clock.now_ms():
            await self._hold(book)
            return False
        await self._install(book)
        return True

    async def _install(self, book: SignedBook) -> None:
        catalog = book.catalog
        assert catalog is not None
        await asyncio.to_thread(_write_atomic, self.path, json.dumps(book.signed))
        if self.store is not None:
            published = int(book.payload.get("published_ms", 0))
            header = Header(version=catalog.version, base_version=None,
                            currency=catalog.currency,
                            effective_ms=book.effective_ms or published,
                            published_ms=published, body_sha256=catalog.ruleset_hash())
            rows = [(i.sku, i.name, i.category, i.price, i.earns_points)
                    for i in catalog.items.values()]
            await asyncio.to_thread(self.store.apply_full, header, rows)
        await self.catalog.install(catalog)
        self.changed, self.applied_ms = None, self._clock.now_ms()
        self._deltas = []
        self._announce()
        self._metrics.refresh.labels(what="pricebook", result="updated").inc()
        logger.info("store %s: price book v%d installed (%d items)", self.store_id,
                    catalog.version, len(catalog.items))
        await self._drop_superseded()

    async def refresh(self, api: CloudApi) -> bool:
        """Download the store's book; True when a newer one was installed."""
        if self.store is not None:
            return await self.refresh_wire(api)
        try:
            return await self.install(await api.request(
                "GET", f"/api/v1/stores/{self.store_id}/price-book"))
        except CacheError as err:
            if err.reason == "nothing_published":  # a normal state: keep polling quietly
                self._metrics.refresh.labels(what="pricebook", result=err.reason).inc()
                logger.debug("store %s: no price book published yet", self.store_id)
            elif err.reason in ("network", "http"):  # refusals were counted by install
                self._metrics.refresh.labels(what="pricebook", result=err.reason).inc()
                logger.info("price book download failed: %s", err)
            return False

    async def handle_announcement(self, payload: bytes, api: CloudApi | None) -> bool:
        """A retained announcement: install the inline book, or download it."""
        try:
            msg = decode(payload, PriceBookAnnouncement)
        except ProtocolError as err:
            self._metrics.refresh.labels(what="pricebook", result="invalid").inc()
            logger.warning("bad price book announcement: %s", err)
            return False
        current = self.version
        if current is not None and msg.version <= current:
            return False  # a retained repeat, or older than what we run
        if msg.document is not None:
            try:
                return await self.install(msg.document)
            except CacheError:
                return False
        return api is not None and await self.refresh(api)

    def changed_since(self, version: int) -> list[str] | None:
        """The skus changed from ``version`` to the applied one through deltas; None when
        a full book came between (or ``version`` is too old): everything may differ."""
        skus: list[str] = []
        at = version
        for base, new, changed in self._deltas:
            if base == at:
                skus += changed
                at = new
        return skus if at == self.version else None

    # ---- the wire path (decision 0047) ------------------------------------------------

    async def refresh_wire(self, api: CloudApi) -> bool:
        """Fetch the delta from the applied version (or the full book), verify, apply or
        hold until its effective time; True when a newer book was applied."""
        assert self.store is not None
        state = await asyncio.to_thread(self.store.state)
        base = None if state is None else state.version
        try:
            try:
                book = await self._fetch(api, base)
                if book is None:
                    return await self.apply_due()
                return await self._take(book)
            except BaseMismatch as err:
                self._metrics.refresh.labels(what="pricebook", result="base_mismatch").inc()
                logger.warning("store %s: price book delta refused (%s); fetching the full "
                               "book", self.store_id, err)
                book = await self._fetch(api, None)
                return False if book is None else await self._take(book)
        except CacheError as err:
            result = err.reason
            if result in ("nothing_published", "network", "http", "too_large"):
                # refusals of what was downloaded were counted where they were found
                self._metrics.refresh.labels(what="pricebook", result=result).inc()
            log = logger.debug if result == "nothing_published" else logger.warning
            log("store %s: price book not refreshed: %s", self.store_id, err)
            return False

    async def _fetch(self, api: CloudApi, base: int | None) -> SignedBook | None:
        """The verified header and body; None when it is not newer than ours (applied,
        or held: its body is not downloaded again)."""
        query = "" if base is None else f"?base={base}"
        reply = await api.request("GET", f"/api/v1/stores/{self.store_id}/price-book/wire"
                                         f"{query}")
        try:
            payload = self._verify_header(reply["header"], base)
            path = reply["body_path"]
        except (KeyError, TypeError) as err:
            raise self._refused("invalid", f"wire reply: {err!r}") from err
        if payload is None:
            return None
        if self.pending is not None and payload["version"] <= self.pending.version:
            self._metrics.refresh.labels(what="pricebook", result="unchanged").inc()
            return None
        if not isinstance(path, str) or not path.startswith("/api/v1/"):
            raise self._refused("invalid", f"body path {path!r}")
        body = await api.download(path, max_bytes=min(MAX_BODY_BYTES,
                                                      int(payload["body_size"])))
        # The signature covers the body through its sha256: hashing the bytes is the
        # whole verification, with no re-canonicalisation of a million items.
        digest = await asyncio.to_thread(lambda: hashlib.sha256(body).hexdigest())
        if len(body) != payload["body_size"] or digest != payload["body_sha256"]:
            raise self._refused("body_hash", f"body of v{payload['version']} is not the "
                                             "one its header signs")
        return SignedBook(signed=reply["header"], body=body)

    def _verify_header(self, document: Mapping[str, Any], base: int | None
                       ) -> dict[str, Any] | None:
        try:
            payload = verify(document, self.keys)
            self._check_header(payload)
        except CacheError as err:
            raise self._refused(err.reason, err.detail) from err
        if payload.get("base_version") is not None and payload["base_version"] != base:
            raise BaseMismatch(base=payload["base_version"], installed=base)
        if base is not None and payload["version"] <= base:
            self._metrics.refresh.labels(what="pricebook", result="unchanged").inc()
            return None
        return payload

    def _check_header(self, payload: Mapping[str, Any]) -> None:
        """A verified header's content; ``CacheError`` (not counted here)."""
        if payload.get("kind") != WIRE_KIND or payload.get("format") != WIRE_FORMAT:
            raise CacheError("invalid", f"not a price book header: {payload.get('kind')!r}")
        if payload.get("store_id") != self.store_id:
            raise CacheError("store", f"price book for {payload.get('store_id')!r}, "
                                      f"not {self.store_id!r}")
        for key in ("version", "effective_ms", "published_ms", "body_size", "upserts",
                    "removals"):
            if not isinstance(payload.get(key), int) or isinstance(payload[key], bool):
                raise CacheError("invalid", f"header field {key}")

    def _refused(self, reason: str, detail: str) -> CacheError:
        self._metrics.refresh.labels(what="pricebook", result=reason).inc()
        logger.warning("store %s: price book refused: %s: %s", self.store_id, reason, detail)
        return CacheError(reason, detail)

    async def _take(self, book: SignedBook) -> bool:
        if book.effective_ms > self._clock.now_ms():
            await self._hold(book)
            return False
        return await self._apply(book)

    async def apply_due(self) -> bool:
        """Apply the held book once its effective time has come (the till's sync loop
        calls this every second, with or without the cloud)."""
        book = self.pending
        if book is None or book.effective_ms > self._clock.now_ms():
            return False
        current = self.version
        if current is not None and book.version <= current:
            await self._drop_superseded()
            return False
        # Taken: once applied, the file goes too (_drop_superseded); a crash before that
        # finds it no newer than the applied book at the next load.
        self.pending = None
        try:
            if book.catalog is not None:
                await self._install(book)
                return True
            return await self._apply(book)
        except BaseMismatch as err:  # something else was applied meanwhile: next refresh
            self._metrics.refresh.labels(what="pricebook", result="base_mismatch").inc()
            logger.warning("store %s: held price book dropped: %s", self.store_id, err)
        except CacheError as err:  # counted where it was found (_refused)
            logger.warning("store %s: held price book v%d dropped: %s", self.store_id,
                           book.version, err)
        if self.pending is None:  # nothing newer was held meanwhile
            await asyncio.to_thread(self.held_path.unlink, missing_ok=True)
        return False

    async def _apply(self, signed: SignedBook) -> bool:
        assert self.store is not None
        store = self.store
        book = signed.wire
        payload = book.payload
        body = Body(book)
        try:
            if payload["base_version"] is None:
                await apply_full_in_child(store, book)
                changed: list[str] | None = None
            else:
                # removals follow the upserts in the body: known once these are consumed
                changed = await asyncio.to_thread(store.apply_delta, book.header,
                                                  body.upserts(), body.removals)
            catalog = await asyncio.to_thread(store.catalog)
        except CacheError as err:
            raise self._refused(err.reason, err.detail) from err
        self.catalog.catalog = catalog  # one reference swap: a sale sees old or new
        self.changed, self.applied_ms = changed, self._clock.now_ms()
        if changed is None:
            self._deltas = []
        else:  # the last few: labels a poll or two behind catch up without a full pass
            self._deltas = [*self._deltas[-15:],
                            (payload["base_version"], payload["version"], changed)]
        self._announce()
        self._metrics.refresh.labels(what="pricebook", result="updated").inc()
        logger.info("store %s: price book v%d applied (%s, %d items)", self.store_id,
                    payload["version"], "full" if changed is None else
                    f"delta of {len(changed)}", payload["items"])
        await self._drop_superseded()
        return True

    def _accept(self, document: Mapping[str, Any]) -> Catalog | None:
        """The verified catalog, None if it is the installed version; ``CacheError``."""
        catalog = self._verified_catalog(document)
        current = self.version
        if current is not None and catalog.version < current:
            raise CacheError("stale", f"version {catalog.version} is older than the "
                                      f"installed {current}")
        if current is not None and catalog.version == current:
            return None
        return catalog

    def _verified_catalog(self, document: Mapping[str, Any]) -> Catalog:
        payload = verify(document, self.keys)
        if payload.get("kind") != DOCUMENT_KIND or payload.get("store_id") != self.store_id:
            raise CacheError("store", f"price book for {payload.get('store_id')!r}, "
                                      f"not {self.store_id!r}")
        effective = payload.get("effective_ms")  # absent from older clouds' documents
        if effective is not None and (not isinstance(effective, int)
                                      or isinstance(effective, bool)):
            raise CacheError("invalid", "effective_ms is not an integer")
        try:
            catalog = Catalog.model_validate(payload["catalog"])
        except (KeyError, ValidationError) as err:
            raise CacheError("invalid", f"catalog: {err}") from err
        if catalog.version != payload.get("version"):
            raise CacheError("invalid", "catalog version differs from the document's")
        return catalog


class Body:
    """The body's lines, parsed one at a time in the worker thread that applies them:
    ``upserts()`` yields table rows, then ``removals`` holds the skus to drop. The counts
    are checked against the header before the last row is handed over, so a body that
    does not hold what its header says fails inside the store's transaction (rolled
    back)."""

    def __init__(self, book: WireBook) -> None:
        self._book = book
        self.removals: list[str] = []

    def _lines(self) -> Iterator[dict[str, Any]]:
        total = 0
        pending = b""
        # Streamed in 1 MiB reads (a few ms each): no single call holds the GIL for long.
        with zstandard.ZstdDecompressor().stream_reader(self._book.body) as reader:
            while True:
                chunk = reader.read(1024 * 1024)
                total += len(chunk)
                if total > MAX_RAW_BYTES:
                    raise CacheError("invalid", f"body inflates beyond {MAX_RAW_BYTES} bytes")
                lines = (pending + chunk).split(b"\n") if chunk else [pending]
                pending = lines.pop() if chunk else b""
                for line in lines:
                    if line:
                        yield json.loads(line)
                if not chunk:
                    return

    def upserts(self) -> Iterator[Row]:
        count = 0
        try:
            for line in self._lines():
                if "upsert" in line:
                    columns = line["upsert"]
                    rows = list(rows_of(columns))
                    count += len(rows)
                    yield from rows
                else:
                    self.removals.extend(line["remove"])
        except (zstandard.ZstdError, ValueError, KeyError, TypeError) as err:
            raise CacheError("invalid", f"price book body: {err!r}") from err
        payload = self._book.payload
        if count != payload["upserts"] or len(self.removals) != payload["removals"]:
            raise CacheError("invalid", "price book body does not hold the header's counts")


# ---- the full apply in a child process -----------------------------------------------

# The child's exit status for a body that does not hold what its header says.
_EXIT_INVALID = 3


async def apply_full_in_child(store: PriceStore, book: WireBook) -> None:
    """Apply a full book in a child process (``python -m edge_agent.pos.pricebook``).

    Parsing and inserting a million rows in a thread of the agent shares the GIL and the
    cores with the till's loop: it waited up to 100 ms (decision 0047, bench). The child
    writes the same SQLite file in the same one transaction, so a kill -9 of either
    leaves the old book or the new one. ``CacheError`` if the child refuses the body
    (``invalid``) or fails (``apply``)."""
    work = store.path.parent / f"{store.path.name}.incoming"
    body, header = work.with_suffix(".body"), work.with_suffix(".json")

    def stage() -> None:
        body.write_bytes(book.body)
        header.write_text(json.dumps(book.payload))

    def unstage() -> None:
        body.unlink(missing_ok=True)
        header.unlink(missing_ok=True)

    await asyncio.to_thread(stage)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.pos.pricebook", str(store.path), str(body),
        str(header), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await proc.communicate()
    except BaseException:  # cancelled: the child's transaction is rolled back with it
        proc.kill()
        await proc.wait()
        raise
    finally:
        await asyncio.to_thread(unstage)
    detail = err.decode(errors="replace").strip()[-500:]
    if proc.returncode == _EXIT_INVALID:
        raise CacheError("invalid", detail)
    if proc.returncode != 0:
        raise CacheError("apply", f"child exited {proc.returncode}: {detail}")


def _child(argv: list[str]) -> int:
    """``python -m edge_agent.pos.pricebook DB BODY HEADER``: apply one verified full book
    (the parent checked the signature and the body's sha256 before staging it)."""
    # Background work: at nice +10 the till's process (nice 0) gets a core first when
    # both want one (CFS weights 110 against 1024). The child shares no lock with it, so
    # running it slower cannot stall the till the way a low-priority thread holding the
    # GIL would.
    os.nice(10)
    db, body, header = (Path(a) for a in argv)
    book = WireBook(payload=json.loads(header.read_text()), body=body.read_bytes())
    try:
        PriceStore(db).apply_full(book.header, Body(book).upserts())
    except CacheError as err:
        print(err, file=sys.stderr)
        return _EXIT_INVALID
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
