"""Signed snapshot documents: verification, tampering, untrusted keys, rotation."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.promotions.errors import SignatureInvalid
from cloud.promotions.signing import SnapshotSigner, load_public, verify_document
from cloud.settings import CloudSettings

PAYLOAD = {"kind": "storefleet.promotions", "store_id": "store-1", "version": 3,
           "snapshots": {"pos": {"version": 3, "currency": "EUR", "promotions": []}}}


def test_signed_document_verifies_and_tampering_is_rejected() -> None:
    signer = SnapshotSigner.generate()
    doc = signer.sign(PAYLOAD)
    assert verify_document(doc, signer.trusted()) == PAYLOAD
    tampered = copy.deepcopy(doc)
    tampered["payload"]["version"] = 4
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify_document(tampered, signer.trusted())
    with pytest.raises(SignatureInvalid, match="untrusted"):
        verify_document(doc, SnapshotSigner.generate().trusted())
    with pytest.raises(SignatureInvalid, match="malformed"):
        verify_document(b"{not json", signer.trusted())


def test_rotation_keeps_old_key_trusted(tmp_path: Path) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    pem = tmp_path / "signing.pem"
    pem.write_bytes(new.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    old_doc = SnapshotSigner(old).sign(PAYLOAD)
    old_pub = SnapshotSigner(old).public_keys()[0]["public_key"]
    signer = SnapshotSigner.from_settings(
        CloudSettings(signing_key_file=str(pem), trusted_keys=(old_pub,)))
    keys = signer.public_keys()
    assert [k["current"] for k in keys] == [True, False]
    trusted = {k["key_id"]: load_public(k["public_key"]) for k in keys}
    # A store holding both keys accepts snapshots signed before and after the switch.
    assert verify_document(old_doc, trusted) == PAYLOAD
    assert verify_document(signer.sign(PAYLOAD), trusted) == PAYLOAD
