"""Per-store signed promotion documents, built once per scope instead of once per request.

A store's document (``service.store_payload``, signed) depends on two things only: the
publication, which never changes once published, and which of its store-scoped entries
name that store (its *scope*). A 5,000-store chain whose regional promotions cover ten
regions has eleven scopes. Until decision 0060, each ``GET
/stores/{id}/promotions/snapshot`` validated every entry again for each of the three
channels (~1,500 pydantic validations for 500 promotions), dumped and hashed the three
snapshots, canonicalised and signed the whole and then had FastAPI validate and encode
it once more: ~170 ms of CPU a request, so a chain's stores fetching a new version
queued behind each other for minutes; and the announce after a publish built every
store's snapshots on the event loop (``cloud.promotions.announce``).

``ScopedPublication`` keeps, per scope, the canonical JSON of each payload field; a
store's payload is those fragments joined in sorted-key order with its own ``store_id``,
byte for byte what ``signing.canonical(store_payload(...))`` gives (tested in
tests/cloud/promotions/test_documents.py), then signed. The route answers with those
bytes as they are. ``StoreDocuments`` (one per app, on ``RetailState``) keeps the
``ScopedPublication`` of the last ``KEEP_VERSIONS`` versions asked for.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cloud.db.models_loyalty import PromotionPublication
from cloud.promotions.service import store_payload
from cloud.promotions.signing import SnapshotSigner

# Stores fetch the newest version, and the one before while a publish spreads; an older
# one only to re-price an old sale. A version's scopes hold ~0.3 MB of JSON each for
# 500 promotions, so both bounds keep the worst case (a scope per store) to a few
# hundred MB and the usual one (a scope per region) to a few MB.
KEEP_VERSIONS = 2
MAX_SCOPES = 128
STORE_ID = "store_id"


def _canonical(value: Any) -> bytes:
    # signing.canonical's form (sorted keys, no whitespace, UTF-8) for any JSON value
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


class ScopedPublication:
    """One publication's per-scope document fragments; safe to share between threads."""

    def __init__(self, publication: PromotionPublication) -> None:
        self.publication = publication
        scopes: dict[str, list[int]] = {}
        for i, entry in enumerate(publication.entries):
            for store_id in entry["stores"] or ():
                scopes.setdefault(store_id, []).append(i)
        self._scope_of = {store_id: tuple(ids) for store_id, ids in scopes.items()}
        self._parts: OrderedDict[tuple[int, ...], tuple[dict[str, bytes], dict[str, str]]]
        self._parts = OrderedDict()
        self._lock = threading.Lock()

    def _fragments(self, store_id: str) -> tuple[dict[str, bytes], dict[str, str]]:
        """The canonical JSON of each payload field but ``store_id``, and the ruleset
        hashes, for ``store_id``'s scope."""
        scope = self._scope_of.get(store_id, ())
        with self._lock:  # one build per scope, however many stores ask at once
            found = self._parts.get(scope)
            if found is None:
                payload = store_payload(self.publication, store_id)
                found = ({key: _canonical(value) for key, value in payload.items()
                          if key != STORE_ID}, dict(payload["ruleset_hashes"]))
                self._parts[scope] = found
                if len(self._parts) > MAX_SCOPES:
                    self._parts.popitem(last=False)
            else:
                self._parts.move_to_end(scope)
        return found

    def ruleset_hashes(self, store_id: str) -> dict[str, str]:
        return dict(self._fragments(store_id)[1])

    def payload_bytes(self, store_id: str) -> bytes:
        """``canonical(store_payload(publication, store_id))``, from the scope's parts."""
        fragments = {**self._fragments(store_id)[0], STORE_ID: _canonical(store_id)}
        return b"{" + b",".join(_canonical(key) + b":" + fragments[key]
                                for key in sorted(fragments)) + b"}"

    def signed_document(self, store_id: str, signer: SnapshotSigner) -> bytes:
        """The JSON of ``signer.sign(store_payload(...))``: payload, key_id, signature."""
        payload = self.payload_bytes(store_id)
        return (b'{"payload":' + payload + b',"key_id":' + _canonical(signer.key_id)
                + b',"signature":' + _canonical(signer.signature(payload)) + b"}")


class StoreDocuments:
    """The ``ScopedPublication`` of the versions most recently asked for."""

    def __init__(self, *, keep: int = KEEP_VERSIONS) -> None:
        self._keep = keep
        self._versions: OrderedDict[int, ScopedPublication] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version: int,
            load: Callable[[], PromotionPublication]) -> ScopedPublication:
        """``version``'s, loaded with ``load`` (which may raise) the first time."""
        with self._lock:
            found = self._versions.get(version)
            if found is None:
                found = ScopedPublication(load())
                self._versions[version] = found
                if len(self._versions) > self._keep:
                    self._versions.popitem(last=False)
            else:
                self._versions.move_to_end(version)
        return found
