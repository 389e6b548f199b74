"""Ed25519 signatures over promotion snapshot documents.

A signed document is ``{"payload": {...}, "key_id": "...", "signature": "<base64>"}``
where the signature covers the canonical JSON of ``payload`` (sorted keys, no
whitespace, UTF-8) and ``key_id`` is the first 16 hex digits of sha256 of the raw
public key. Stores keep a set of trusted public keys (``GET /api/v1/promotions/keys``
or provisioned with the box) and verify with ``verify_document``.

Key rotation: generate a new key; deploy the new public key to stores first (list it
in ``STOREFLEET_TRUSTED_KEYS`` on a cloud still signing with the old key, or provision
it); then switch ``STOREFLEET_SIGNING_KEY_FILE`` to the new key and move the old public
key to ``STOREFLEET_TRUSTED_KEYS``; republish; drop the old key once every store has
fetched a snapshot signed with the new one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from cloud.promotions.errors import SignatureInvalid
from cloud.settings import CloudSettings

logger = logging.getLogger(__name__)


def canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def load_public(b64: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64, validate=True))
    except (binascii.Error, ValueError) as err:
        raise SignatureInvalid(f"not a base64 raw Ed25519 public key: {err}") from err


class SnapshotSigner:
    def __init__(self, key: Ed25519PrivateKey, *, trusted: Iterable[Ed25519PublicKey] = ()):
        self._key = key
        self.public_key = key.public_key()
        self.key_id = key_id_of(self.public_key)
        self._trusted = [k for k in trusted if key_id_of(k) != self.key_id]

    @classmethod
    def generate(cls) -> SnapshotSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_settings(cls, settings: CloudSettings) -> SnapshotSigner:
        trusted = [load_public(k) for k in settings.trusted_keys]
        if settings.signing_key_file is None:
            logger.warning("promotions: no STOREFLEET_SIGNING_KEY_FILE; signing snapshots "
                           "with an ephemeral key that changes at every start")
            return cls(Ed25519PrivateKey.generate(), trusted=trusted)
        key = serialization.load_pem_private_key(Path(settings.signing_key_file).read_bytes(),
                                                 password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{settings.signing_key_file} is not an Ed25519 private key")
        return cls(key, trusted=trusted)

    def sign(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return {"payload": dict(payload), "key_id": self.key_id,
                "signature": self.signature(canonical(payload))}

    def signature(self, canonical_payload: bytes) -> str:
        """base64 of the signature over a payload already in ``canonical`` form."""
        return base64.b64encode(self._key.sign(canonical_payload)).decode()

    def public_keys(self) -> list[dict[str, Any]]:
        """The current key first, then keys still trusted during a rotation."""
        keys = [(self.public_key, True), *((k, False) for k in self._trusted)]
        return [{"key_id": key_id_of(k), "public_key": base64.b64encode(raw_public(k)).decode(),
                 "current": current} for k, current in keys]

    def trusted(self) -> dict[str, Ed25519PublicKey]:
        return {key_id_of(k): k for k in (self.public_key, *self._trusted)}


def verify_document(
    document: Mapping[str, Any] | bytes | str, keys: Mapping[str, Ed25519PublicKey]
) -> dict[str, Any]:
    """The payload of a signed document, or ``SignatureInvalid``."""
    try:
        doc = json.loads(document) if isinstance(document, bytes | str) else dict(document)
        payload, key_id, signature = doc["payload"], doc["key_id"], doc["signature"]
        raw_sig = base64.b64decode(signature, validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        raise SignatureInvalid(f"malformed document: {err}") from err
    key = keys.get(key_id) if isinstance(key_id, str) else None
    if key is None:
        raise SignatureInvalid("signed by an untrusted key", key_id=str(key_id))
    if not isinstance(payload, dict):
        raise SignatureInvalid("payload is not an object", key_id=key_id)
    try:
        key.verify(raw_sig, canonical(payload))
    except InvalidSignature as err:
        raise SignatureInvalid("signature does not match the payload", key_id=key_id) from err
    return payload
