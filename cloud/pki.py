"""A deployment's certificates for the cloud broker's mTLS listener (decision 0032).

    init_ca(d)                       d/ca.crt, d/ca.key          the deployment's CA
    issue_server(d, ["cloud.example.net"])  d/server.crt, .key   the broker (SANs)
    issue_store(d, "S001")           d/stores/S001.crt, .key     a store (CN = store id)

Mosquitto's ``use_identity_as_username`` makes a store certificate's CN its user name, so
the CN is the store id and the dynamic security plugin applies the role ``store-S001``.
Keys are EC P-256 (small, fast on a store box, supported by every TLS 1.2+ stack), written
0600 and never replaced: every function refuses to overwrite a file (``PkiError``), so a
second run cannot silently orphan the certificates already handed out.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud.errors import CloudError
from protocols.topics import valid_id

CA_DAYS = 3650  # ten years: replacing the CA means re-issuing every store's certificate
# 825 days: the longest validity browsers accepted for leaf certificates, a common
# ceiling for private PKIs too; renew before, a later issue automates it (enrolment).
LEAF_DAYS = 825
# Issued a few minutes in the past: a store box whose clock lags slightly must not see
# a certificate that is "not yet valid".
BACKDATE = dt.timedelta(minutes=5)


class PkiError(CloudError):
    """A certificate cannot be made; ``path`` names the file concerned."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path
    key: Path


def ca_paths(directory: Path) -> Issued:
    return Issued(directory / "ca.crt", directory / "ca.key")


def init_ca(directory: Path, *, name: str = "storefleet deployment CA",
            days: int = CA_DAYS) -> Issued:
    """A new self-signed CA in ``directory`` (refused if one is there)."""
    paths = ca_paths(directory)
    _refuse_existing(paths)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        # path_length 0: this CA signs leaf certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(paths, cert, key)
    return paths


def issue_server(directory: Path, hosts: list[str], *, days: int = LEAF_DAYS) -> Issued:
    """The broker's certificate: every name or IP address a client connects to is a
    SAN (clients check the SAN, not the CN)."""
    if not hosts:
        raise PkiError(directory / "server.crt", "give at least one --host")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    paths = Issued(directory / "server.crt", directory / "server.key")
    _issue(directory, paths, common_name=hosts[0], sans=names,
           usage=ExtendedKeyUsageOID.SERVER_AUTH, days=days)
    return paths


def issue_store(directory: Path, store_id: str, *, days: int = LEAF_DAYS) -> Issued:
    """A store's client certificate, CN = store id (its broker user name)."""
    if not valid_id(store_id):
        raise PkiError(directory, f"{store_id!r} is not a valid store id")
    stores = directory / "stores"
    paths = Issued(stores / f"{store_id}.crt", stores / f"{store_id}.key")
    stores.mkdir(exist_ok=True, mode=0o700)
    _issue(directory, paths, common_name=store_id, sans=[],
           usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days)
    return paths


@dataclass(frozen=True, slots=True)
class Identity:
    """A store's key and certificate in memory (PEM), for a bundle (decision 0035)."""

    key_pem: bytes
    cert_pem: bytes
    serial: int


def make_store_identity(directory: Path, store_id: str, *, days: int = LEAF_DAYS) -> Identity:
    """Like ``issue_store`` but nothing written: the key exists only in what is returned
    (the enrolment bundle), so the cloud never keeps a store's private key."""
    if not valid_id(store_id):
        raise PkiError(directory, f"{store_id!r} is not a valid store id")
    cert, key = _build(directory, common_name=store_id, sans=[],
                       usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days)
    return Identity(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM),
                    cert.serial_number)


def write_crl(directory: Path, path: Path, serials: list[int]) -> None:
    """A CRL signed by the CA listing ``serials``, replacing ``path`` atomically (the
    broker may read it at any moment: Mosquitto's ``crlfile``, reloaded on SIGHUP)."""
    ca_cert, ca_key = _load_ca(directory)
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now - BACKDATE)
               # Mosquitto (OpenSSL) refuses every client once the CRL's next update has
               # passed; the cloud rewrites it on every change, so one CA lifetime is fine.
               .next_update(ca_cert.not_valid_after_utc))
    for serial in sorted(set(serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(now - BACKDATE).build())
    pem = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(pem)
        os.replace(tmp, path)
    except OSError as err:
        raise PkiError(path, f"cannot write the CRL: {err.strerror}") from err


def _issue(directory: Path, paths: Issued, *, common_name: str, sans: list[x509.GeneralName],
           usage: x509.ObjectIdentifier, days: int) -> None:
    _refuse_existing(paths)
    cert, key = _build(directory, common_name=common_name, sans=sans, usage=usage, days=days)
    _write(paths, cert, key)


def _build(directory: Path, *, common_name: str, sans: list[x509.GeneralName],
           usage: x509.ObjectIdentifier, days: int
           ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = _load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # ECDHE key exchange: an EC key only signs the handshake.
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=False, crl_sign=False,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    paths = ca_paths(directory)
    try:
        cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
        key = serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
    except FileNotFoundError as err:
        raise PkiError(Path(err.filename), "no CA here: run `storefleet cloud pki init` "
                                           "first") from err
    except (OSError, ValueError) as err:
        raise PkiError(paths.cert, f"cannot load the CA: {err}") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(paths.key, "not an EC private key made by `pki init`")
    return cert, key


def _refuse_existing(paths: Issued) -> None:
    for path in (paths.cert, paths.key):
        if path.exists():
            raise PkiError(path, "exists; not replaced (remove it first to issue anew)")


def _write(paths: Issued, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    """The key first (0600, created exclusively), then the certificate (0644)."""
    _create(paths.key, _key_pem(key), mode=0o600)
    _create(paths.cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _create(path: Path, data: bytes, *, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as err:
        raise PkiError(path, "exists; not replaced") from err
    except OSError as err:
        raise PkiError(path, f"cannot create: {err.strerror}") from err
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)  # the umask may have narrowed the mode os.open was given
