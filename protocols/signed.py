"""Ed25519 signed documents, as the store box checks them.

A signed document is ``{"payload": {...}, "key_id": "...", "signature": "<base64>"}``;
the signature covers the canonical JSON of ``payload`` (sorted keys, no whitespace,
UTF-8) and ``key_id`` is the first 16 hex digits of sha256 of the raw public key. The
cloud signs with ``cloud.promotions.signing.SnapshotSigner`` (promotion snapshots, price
books, artifact manifests).

``verify_signed`` tells *why* a document is refused (``SignatureError.reason``), so a
box can count each case apart: ``unsigned`` (no signature at all), ``malformed``,
``untrusted_key``, ``signature`` (the payload was changed, or the signature forged).
(``edge_agent.pos.cache`` still has its own copy for the till's documents, older than
this module; it can move here.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocols.errors import ProtocolError


class SignatureError(ProtocolError):
    """A signed document that cannot be trusted (``reason``: unsigned, malformed,
    untrusted_key, signature; ``key_id`` when the document named one)."""

    def __init__(self, reason: str, detail: str, *, key_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.key_id = key_id


def canonical(payload: Mapping[str, Any]) -> bytes:
    """The bytes the cloud signs: sorted keys, no whitespace, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def load_public_keys(b64_keys: Iterable[str]) -> dict[str, Ed25519PublicKey]:
    """Raw base64 Ed25519 public keys, by key id; a bad key is a ``SignatureError``."""
    keys = {}
    for b64 in b64_keys:
        try:
            raw = base64.b64decode(b64, validate=True)
            key = Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError) as err:
            raise SignatureError("malformed", f"not a base64 Ed25519 public key: {err}") \
                from err
        keys[hashlib.sha256(raw).hexdigest()[:16]] = key
    return keys


def verify_signed(document: Any, keys: Mapping[str, Ed25519PublicKey]) -> dict[str, Any]:
    """The payload of ``document`` if a trusted key signed exactly it."""
    if not isinstance(document, Mapping):
        raise SignatureError("malformed", "a signed document is a JSON object")
    if not document.get("signature") and not document.get("key_id"):
        raise SignatureError("unsigned", "the document carries no signature")
    payload, key_id = document.get("payload"), document.get("key_id")
    try:
        signature = base64.b64decode(str(document.get("signature", "")), validate=True)
    except binascii.Error as err:
        raise SignatureError("malformed", f"signature is not base64: {err}") from err
    if not isinstance(payload, dict) or not isinstance(key_id, str):
        raise SignatureError("malformed", "payload must be an object and key_id a string")
    key = keys.get(key_id)
    if key is None:
        raise SignatureError("untrusted_key", f"signed by untrusted key {key_id!r}",
                             key_id=key_id)
    try:
        key.verify(signature, canonical(payload))
    except InvalidSignature as err:
        raise SignatureError("signature", "signature does not match the payload",
                             key_id=key_id) from err
    return payload
