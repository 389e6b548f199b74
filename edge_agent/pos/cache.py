"""What the till prices with, cached on disk so the store keeps selling offline.

- ``PromotionCache``: the store's signed promotion document (``GET /api/v1/stores/{id}/
  promotions/snapshot``), verified with the cloud's Ed25519 public keys before it is
  used or stored; a document for another store, an older version or a bad signature is
  refused (counted) and the cached one stays. ``ruleset(channel)`` compiles once.
- ``CatalogCache``: the price book the till prices with (installed by the content
  pipeline or provisioning; a JSON ``pricing.Catalog``).
- ``RangeCache``: the coupon code ranges the cloud pre-allocated to this store.

Files are written atomically (temp file + ``os.replace``) in a worker thread. The HTTP
side is ``CloudApi`` (httpx); tests give it ``httpx.ASGITransport`` of the real cloud
app or a real server. Errors from httpx are mapped here to ``CacheError``.

A store whose HQ has published nothing yet is a normal state, not a failure: the cloud
answers it with the problem type ``protocols.problems.NOTHING_PUBLISHED``, which
``CloudApi`` maps to ``CacheError("nothing_published")``; the caches then log at debug,
count ``storefleet_pos_cache_refresh_total{result="nothing_published"}`` and the till
keeps polling. Every other refusal is a warning.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client import CollectorRegistry, Counter

from edge_agent.pos.peripherals import PosError
from pricing import Catalog, PromotionSnapshot, Ruleset, compile
from protocols.problems import NOTHING_PUBLISHED, problem_type

logger = logging.getLogger(__name__)

DOCUMENT_KIND = "storefleet.promotions"  # cloud.promotions.service.DOCUMENT_KIND


class CacheError(PosError):
    """A download or a document that cannot be used (``reason``: network, http,
    nothing_published, signature, store, stale, invalid)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def canonical(payload: Mapping[str, Any]) -> bytes:
    """The bytes the cloud signs: sorted keys, no whitespace, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def load_keys(b64_keys: list[str] | tuple[str, ...]) -> dict[str, Ed25519PublicKey]:
    """Raw base64 Ed25519 public keys, by key id (first 16 hex of sha256 of the key)."""
    keys = {}
    for b64 in b64_keys:
        try:
            raw = base64.b64decode(b64, validate=True)
            key = Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError) as err:
            raise CacheError("invalid", f"not a base64 Ed25519 public key: {err}") from err
        keys[hashlib.sha256(raw).hexdigest()[:16]] = key
    return keys


def verify(document: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> dict[str, Any]:
    try:
        payload, key_id = document["payload"], document["key_id"]
        signature = base64.b64decode(document["signature"], validate=True)
    except (KeyError, TypeError, binascii.Error) as err:
        raise CacheError("signature", f"malformed signed document: {err}") from err
    key = keys.get(key_id) if isinstance(key_id, str) else None
    if key is None:
        raise CacheError("signature", f"signed by untrusted key {key_id!r}")
    if not isinstance(payload, dict):
        raise CacheError("signature", "payload is not an object")
    try:
        key.verify(signature, canonical(payload))
    except InvalidSignature as err:
        raise CacheError("signature", "signature does not match the payload") from err
    return payload


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())  # the new file is complete on disk before it replaces the old
    os.replace(tmp, path)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _problem_type(response: httpx.Response) -> str | None:
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return None
    try:
        return problem_type(response.json())
    except ValueError:  # a body that says problem+json but is not JSON: a plain failure
        return None


class CloudApi:
    """The few HTTP calls the POS makes to the cloud, with a device token."""

    def __init__(self, base_url: str, *, token: str | None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 timeout_s: float = 5.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(base_url=base_url, headers=headers,
                                         transport=transport, timeout=timeout_s)

    async def route_through(self, transport: httpx.AsyncBaseTransport) -> None:
        """Send every later call through ``transport``, with the same URL, token and
        timeout: a secondary box through its store's primary (decision 0049)."""
        old = self._client
        self._client = httpx.AsyncClient(base_url=old.base_url, headers=old.headers,
                                         transport=transport, timeout=old.timeout)
        await old.aclose()

    async def request(self, method: str, path: str, *,
                      json_body: dict[str, Any] | None = None) -> Any:
        try:
            response = await self._client.request(method, path, json=json_body)
        except httpx.HTTPError as err:
            raise CacheError("network", f"{method} {path}: {err!r}") from err
        if response.status_code >= 400:
            if _problem_type(response) == NOTHING_PUBLISHED:
                raise CacheError("nothing_published", f"{method} {path}: nothing published "
                                                      "for this store yet")
            raise CacheError("http", f"{method} {path}: {response.status_code} "
                                     f"{response.text[:200]}")
        try:
            return response.json()
        except ValueError as err:
            raise CacheError("invalid", f"{method} {path}: not JSON") from err

    async def download(self, path: str, *, max_bytes: int) -> bytes:
        """A binary body (a price book's zstd body), refused beyond ``max_bytes``."""
        try:
            async with self._client.stream("GET", path) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise CacheError("http", f"GET {path}: {response.status_code} "
                                             f"{response.text[:200]}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise CacheError("too_large", f"GET {path}: over {max_bytes} bytes")
        except httpx.HTTPError as err:
            raise CacheError("network", f"GET {path}: {err!r}") from err
        return bytes(body)

    async def aclose(self) -> None:
        await self._client.aclose()


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.refresh = Counter(
            "storefleet_pos_cache_refresh", "POS cache downloads by what and result",
            ["what", "result"], registry=registry)


class PromotionCache:
    def __init__(self, path: Path, *, store_id: str, keys: Mapping[str, Ed25519PublicKey],
                 metrics: CacheMetrics) -> None:
        self.path = path
        self.store_id = store_id
        self.keys = dict(keys)
        self._metrics = metrics
        self._payload: dict[str, Any] | None = None
        self._compiled: dict[str, tuple[PromotionSnapshot, Ruleset]] = {}

    @property
    def version(self) -> int | None:
        return None if self._payload is None else int(self._payload["version"])

    async def load(self) -> bool:
        """Load the cached document (verified again: the disk is not trusted either)."""
        text = await asyncio.to_thread(_read, self.path)
        if text is None:
            return False
        try:
            self._accept(json.loads(text), allow_same=True)
        except (CacheError, ValueError) as err:
            self._metrics.refresh.labels(what="promotions", result="bad_cache").inc()
            logger.error("cached promotions %s unusable: %s", self.path, err)
            return False
        return True

    async def install(self, document: Mapping[str, Any]) -> bool:
        """Verify and store a signed document; False if it is not newer than ours."""
        if not self._accept(document, allow_same=False):
            return False
        await asyncio.to_thread(_write_atomic, self.path, json.dumps(document))
        logger.info("promotions v%s cached for store %s", self.version, self.store_id)
        return True

    async def refresh(self, api: CloudApi) -> bool:
        path = f"/api/v1/stores/{self.store_id}/promotions/snapshot"
        try:
            changed = await self.install(await api.request("GET", path))
        except CacheError as err:
            self._metrics.refresh.labels(what="promotions", result=err.reason).inc()
            if err.reason == "nothing_published":
                logger.debug("store %s: no promotions published yet; polling",
                             self.store_id)
            else:
                logger.warning("promotions refresh failed: %s", err)
            return False
        self._metrics.refresh.labels(what="promotions",
                                     result="updated" if changed else "unchanged").inc()
        return changed

    def _accept(self, document: Mapping[str, Any], *, allow_same: bool) -> bool:
        payload = verify(document, self.keys)
        if payload.get("kind") != DOCUMENT_KIND or payload.get("store_id") != self.store_id:
            raise CacheError("store", f"document for {payload.get('store_id')!r}, "
                                      f"not {self.store_id!r}")
        version = payload.get("version")
        if not isinstance(version, int):
            raise CacheError("invalid", "version missing")
        current = self.version
        if current is not None and (version < current or (version == current
                                                          and not allow_same)):
            return False  # never go back to an older snapshot
        try:
            compiled = {ch: self._compile(doc) for ch, doc in payload["snapshots"].items()}
        except (KeyError, TypeError, ValueError) as err:
            raise CacheError("invalid", f"snapshots: {err}") from err
        self._payload, self._compiled = dict(payload), compiled
        return True

    @staticmethod
    def _compile(doc: Any) -> tuple[PromotionSnapshot, Ruleset]:
        snapshot = PromotionSnapshot.model_validate(doc)
        return snapshot, compile(snapshot)

    def ruleset(self, channel: str = "pos") -> tuple[PromotionSnapshot, Ruleset] | None:
        return self._compiled.get(channel)


class CatalogCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.catalog: Catalog | None = None

    async def load(self) -> bool:
        text = await asyncio.to_thread(_read, self.path)
        if text is None:
            return False
        try:
            self.catalog = Catalog.model_validate_json(text)
        except ValueError as err:
            logger.error("cached catalog %s unusable: %s", self.path, err)
            return False
        return True

    async def install(self, catalog: Catalog) -> None:
        await asyncio.to_thread(_write_atomic, self.path, catalog.model_dump_json())
        self.catalog = catalog


class RangeCache:
    """Coupon code ranges of this store: ``{prefix}{n:06d}``, first <= n < first + count."""

    def __init__(self, path: Path, *, store_id: str, metrics: CacheMetrics) -> None:
        self.path = path
        self.store_id = store_id
        self._metrics = metrics
        self.ranges: list[dict[str, Any]] = []

    async def load(self) -> None:
        text = await asyncio.to_thread(_read, self.path)
        if text is not None:
            try:
                self.ranges = list(json.loads(text)["ranges"])
            except (ValueError, KeyError, TypeError) as err:
                logger.error("cached coupon ranges %s unusable: %s", self.path, err)

    async def refresh(self, api: CloudApi) -> bool:
        try:
            doc = await api.request("GET", f"/api/v1/stores/{self.store_id}/coupon-ranges")
            ranges = [r for r in doc["ranges"] if r["store_id"] == self.store_id]
        except CacheError as err:
            self._metrics.refresh.labels(what="coupon_ranges", result=err.reason).inc()
            logger.warning("coupon range refresh failed: %s", err)
            return False
        except (KeyError, TypeError) as err:
            self._metrics.refresh.labels(what="coupon_ranges", result="invalid").inc()
            logger.warning("coupon range document unusable: %s", err)
            return False
        await asyncio.to_thread(_write_atomic, self.path, json.dumps({"ranges": ranges}))
        self.ranges = ranges
        self._metrics.refresh.labels(what="coupon_ranges", result="updated").inc()
        return True

    def lookup(self, code: str, *, now_ms: int) -> dict[str, Any] | None:
        """The unexpired range that ``code`` belongs to, or None."""
        prefix, sep, serial = code.rpartition("-")
        if not sep or not serial.isdigit():
            return None
        n = int(serial)
        for r in self.ranges:
            if (r["prefix"] == prefix + "-" and r["first"] <= n < r["first"] + r["count"]
                    and now_ms < r["expires_ms"]):
                return r
        return None
