"""``storefleet cloud pki``: a deployment's CA, the broker's certificate and one client
certificate per store (decision 0032), checked with the cryptography library and by
OpenSSL's own chain verification (``ssl``)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud import pki


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)  # type: ignore[type-var]


def test_ca_server_and_store_certificates(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    ca = pki.init_ca(d)
    server = pki.issue_server(d, ["cloud.example.net", "10.0.0.5"])
    store = pki.issue_store(d, "S001")
    assert store == pki.Issued(d / "stores" / "S001.crt", d / "stores" / "S001.key")

    ca_cert, server_cert, store_cert = _cert(ca.cert), _cert(server.cert), _cert(store.cert)
    assert _ext(ca_cert, x509.BasicConstraints).value.ca is True
    assert _ext(ca_cert, x509.BasicConstraints).value.path_length == 0
    assert _ext(ca_cert, x509.KeyUsage).value.key_cert_sign is True
    for leaf, usage in ((server_cert, ExtendedKeyUsageOID.SERVER_AUTH),
                        (store_cert, ExtendedKeyUsageOID.CLIENT_AUTH)):
        assert leaf.issuer == ca_cert.subject
        assert _ext(leaf, x509.BasicConstraints).value.ca is False
        key_usage = _ext(leaf, x509.KeyUsage)
        assert key_usage.critical and key_usage.value.digital_signature
        assert not key_usage.value.key_cert_sign
        assert list(_ext(leaf, x509.ExtendedKeyUsage).value) == [usage]
        leaf.verify_directly_issued_by(ca_cert)
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert dt.timedelta(days=825) <= lifetime <= dt.timedelta(days=826)
        assert leaf.not_valid_before_utc <= dt.datetime.now(dt.UTC)
    sans = _ext(server_cert, x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["cloud.example.net"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    # The store's CN is its broker user name (use_identity_as_username).
    assert store_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "S001"
    assert isinstance(store_cert.public_key(), ec.EllipticCurvePublicKey)

    # Keys are the owner's alone; certificates are readable.
    for issued in (ca, server, store):
        assert issued.key.stat().st_mode & 0o777 == 0o600
        assert issued.cert.stat().st_mode & 0o777 == 0o644

    # OpenSSL loads the pair (the key matches the certificate) under the CA.
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.load_cert_chain(store.cert, store.key)


def test_nothing_is_ever_overwritten(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    ca = pki.init_ca(d)
    store = pki.issue_store(d, "S001")
    before = {p: p.read_bytes() for p in (ca.cert, ca.key, store.cert, store.key)}
    with pytest.raises(pki.PkiError, match="exists; not replaced"):
        pki.init_ca(d)
    with pytest.raises(pki.PkiError, match="exists; not replaced"):
        pki.issue_store(d, "S001")
    assert {p: p.read_bytes() for p in before} == before


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(pki.PkiError, match="no CA here"):
        pki.issue_store(tmp_path, "S001")
    pki.init_ca(tmp_path)
    with pytest.raises(pki.PkiError, match="not a valid store id"):
        pki.issue_store(tmp_path, "../S001")
    with pytest.raises(pki.PkiError, match="at least one --host"):
        pki.issue_server(tmp_path, [])


def test_the_cli_as_the_readme_runs_it(tmp_path: Path) -> None:
    d = tmp_path / "certs"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "storefleet", "cloud", "pki", *args],
                              capture_output=True, text=True, timeout=60, check=False)

    for args in (["init", str(d)], ["server", str(d), "--host", "cloud.example.net",
                                    "--host", "127.0.0.1"], ["store", str(d), "S001"]):
        done = cli(*args)
        assert done.returncode == 0, done.stderr
    assert (d / "stores" / "S001.key").stat().st_mode & 0o777 == 0o600
    again = cli("store", str(d), "S001")
    assert again.returncode == 1 and "not replaced" in again.stderr


def test_pki_crl_writes_an_empty_list_signed_by_the_ca_once(tmp_path: Path) -> None:
    """`storefleet cloud pki crl DIR`: the broker's first crlfile (decision 0035)."""
    pki.init_ca(tmp_path)
    cmd = [sys.executable, "-m", "storefleet", "cloud", "pki", "crl", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    crl = x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())
    ca_key = _cert(tmp_path / "ca.crt").public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(ca_key) and len(list(crl)) == 0
    again = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    assert again.returncode == 0 and "kept" in again.stdout
