"""Store identities: enrolment tokens, the certificate in use, revoked certificates
(decision 0035). No private key is ever stored: it exists only in the bundle."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.models import Base, Id

# A certificate serial is up to 20 bytes (RFC 5280): at most 49 decimal digits.
Serial = String(64)


class StoreIdentity(Base):
    __tablename__ = "store_identities"

    store_id: Mapped[str] = mapped_column(Id, primary_key=True)
    # provisioned (token issued, not fetched) | enrolled | revoked
    status: Mapped[str] = mapped_column(String(16))
    # sha256 hex of the one-time token; cleared when it is used or the store revoked.
    token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_expires_ms: Mapped[int | None]
    cert_serial: Mapped[str | None] = mapped_column(Serial)
    provisioned_ms: Mapped[int]
    enrolled_ms: Mapped[int | None]
    revoked_ms: Mapped[int | None]


class RevokedCertificate(Base):
    """Every certificate taken back (revocation, rotation): the CRL lists them all."""

    __tablename__ = "revoked_certificates"

    serial: Mapped[str] = mapped_column(Serial, primary_key=True)
    store_id: Mapped[str] = mapped_column(Id)
    revoked_ms: Mapped[int]
