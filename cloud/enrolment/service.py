"""Provision, enrol, revoke: the store identity's life (decision 0035).

    token = provision(session, "S001", settings=..., now_ms=...)   # hq-admin, via the API
    bundle = enrol(session, token, settings=..., now_ms=...)        # the box, once
    revoke(session, "S001", now_ms=...)                             # hq-admin

These run inside the caller's transaction (blocking: the API calls them in a thread).
What the broker must learn afterwards comes back as a ``BrokerChange``; ``apply_broker``
sends it (the dynamic security plugin) and rewrites the CRL, then signals the broker to
reload it. Why both: Mosquitto skips the plugin's password check for a certificate
identity (``use_identity_as_username``), so a disabled client is kicked but may connect
again with its certificate; only the CRL keeps a taken-back certificate out.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import broker_users, pki
from cloud.db.models import Device, Store
from cloud.db.models_enrolment import RevokedCertificate, StoreIdentity
from cloud.enrolment import bundle
from cloud.enrolment.errors import EnrolmentError
from cloud.enrolment.settings import EnrolmentSettings
from protocols.broker import BrokerAddress

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Provisioned:
    store_id: str
    token: str
    expires_ms: int


@dataclass(frozen=True, slots=True)
class BrokerChange:
    """What the broker must be told after the transaction commits."""

    store_id: str
    enable: bool  # True: (re)create and enable the store's client; False: disable (kick)
    crl_changed: bool


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _ca_dir(settings: EnrolmentSettings) -> Path:
    if not settings.ca_dir or not settings.store_broker_url:
        raise EnrolmentError("not_configured", "provisioning needs STOREFLEET_CA_DIR and "
                                               "STOREFLEET_STORE_BROKER_URL")
    return Path(settings.ca_dir)


def provision(session: Session, store_id: str, *, settings: EnrolmentSettings,
              now_ms: int) -> Provisioned:
    """A new one-time token for ``store_id`` (any earlier unused token is void). The
    store's current certificate stays valid until the box enrols with the new token."""
    _ca_dir(settings)
    token = secrets.token_urlsafe(32)
    expires_ms = now_ms + settings.token_ttl_s * 1000
    row = session.get(StoreIdentity, store_id, with_for_update=True)
    if row is None:
        row = StoreIdentity(store_id=store_id, status="provisioned", provisioned_ms=now_ms)
        session.add(row)
    elif row.status == "revoked":
        row.status = "provisioned"  # re-provisioning a revoked store gives it a new identity
    row.token_sha256 = _digest(token)
    row.token_expires_ms = expires_ms
    row.provisioned_ms = now_ms
    logger.info("store %s: provisioned, enrolment token valid until %d", store_id, expires_ms)
    return Provisioned(store_id, token, expires_ms)


def enrol(session: Session, token: str, *, settings: EnrolmentSettings,
          now_ms: int) -> tuple[bytes, BrokerChange]:
    """The bundle for the token's store, once: a fresh key and certificate; the store's
    previous certificate, if any, is revoked (rotation)."""
    ca_dir = _ca_dir(settings)
    row = session.scalars(select(StoreIdentity).where(
        StoreIdentity.token_sha256 == _digest(token)).with_for_update()).one_or_none()
    if row is None:
        raise EnrolmentError("unknown_token", "unknown or already used enrolment token")
    if row.token_expires_ms is None or row.token_expires_ms <= now_ms:
        raise EnrolmentError("token_expired", f"the enrolment token of store {row.store_id} "
                                              "has expired: provision the store again")
    identity = pki.make_store_identity(ca_dir, row.store_id)
    crl_changed = _revoke_serial(session, row, now_ms=now_ms)
    row.token_sha256 = None  # one time: the row no longer matches any token
    row.token_expires_ms = None
    row.cert_serial = str(identity.serial)
    row.status = "enrolled"
    row.enrolled_ms = now_ms
    assert settings.store_broker_url is not None  # _ca_dir checked it
    data = bundle.build(store_id=row.store_id, key_pem=identity.key_pem,
                        cert_pem=identity.cert_pem,
                        ca_pem=(ca_dir / "ca.crt").read_bytes(),
                        broker_url=settings.store_broker_url)
    logger.info("store %s: enrolled, certificate serial %x", row.store_id, identity.serial)
    return data, BrokerChange(row.store_id, enable=True, crl_changed=crl_changed)


def revoke(session: Session, store_id: str, *, now_ms: int) -> BrokerChange:
    row = session.get(StoreIdentity, store_id, with_for_update=True)
    if row is None:
        raise EnrolmentError("unknown_store", f"store {store_id} was never provisioned")
    crl_changed = _revoke_serial(session, row, now_ms=now_ms)
    row.status = "revoked"
    row.revoked_ms = now_ms
    row.token_sha256 = None
    row.token_expires_ms = None
    _offline(session, store_id, now_ms=now_ms)
    logger.warning("store %s: revoked", store_id)
    return BrokerChange(store_id, enable=False, crl_changed=crl_changed)


def _offline(session: Session, store_id: str, *, now_ms: int) -> None:
    """The plugin kicks a disabled client without its will, so no death comes: the
    store's session is ended here, as ``apply_death`` would (its birth, redelivered,
    cannot revive it: ``dead_bd_seq``)."""
    store = session.get(Store, store_id, with_for_update=True)
    if store is None:
        return
    store.online = False
    store.dead_bd_seq = store.bd_seq
    store.last_death_ms = now_ms
    for device in session.scalars(select(Device).where(Device.store_id == store_id,
                                                       Device.online)):
        device.online = False


def _revoke_serial(session: Session, row: StoreIdentity, *, now_ms: int) -> bool:
    if row.cert_serial is None:
        return False
    session.merge(RevokedCertificate(serial=row.cert_serial, store_id=row.store_id,
                                     revoked_ms=now_ms))
    row.cert_serial = None
    return True


def is_enrolled(session: Session, store_id: str) -> bool:
    row = session.get(StoreIdentity, store_id)
    return row is not None and row.status == "enrolled"


def revoked_stores(session: Session, store_ids: frozenset[str]) -> list[str]:
    return list(session.scalars(select(StoreIdentity.store_id).where(
        StoreIdentity.store_id.in_(sorted(store_ids)), StoreIdentity.status == "revoked")))


def write_crl(session: Session, settings: EnrolmentSettings) -> None:
    """Rewrite the CRL from every revoked serial, then ask the broker to reload it."""
    path = settings.crl_path
    if path is None:
        return
    serials = [int(s) for s in session.scalars(select(RevokedCertificate.serial))]
    pki.write_crl(_ca_dir(settings), path, serials)
    if settings.broker_pid_file:
        try:
            pid = int(Path(settings.broker_pid_file).read_text().strip())
            os.kill(pid, signal.SIGHUP)  # Mosquitto reloads crlfile on SIGHUP
        except (OSError, ValueError) as err:
            raise EnrolmentError("broker", f"CRL written to {path} but the broker was not "
                                           f"signalled ({settings.broker_pid_file}): {err}"
                                 ) from err
    else:
        logger.warning("CRL %s rewritten; no STOREFLEET_BROKER_PID_FILE: reload the broker "
                       "(SIGHUP) for it to take effect", path)


def broker_commands(change: BrokerChange) -> list[broker_users.Command]:
    if change.enable:
        return [{"command": "enableClient", "username": change.store_id}]
    # disableClient kicks the connected client at once (Mosquitto's plugin does it).
    return [{"command": "disableClient", "username": change.store_id}]


async def apply_broker(change: BrokerChange, *, admin: BrokerAddress) -> None:
    """Tell the plugin (as its admin); raise ``EnrolmentError('broker')`` on refusal."""
    try:
        if change.enable:
            # Exists after a first enrolment: an "already exists" is no refusal.
            await broker_users.send_commands(
                admin, commands=broker_users.store_user_commands(change.store_id, None),
                tolerate_existing=True)
        await broker_users.send_commands(admin, commands=broker_commands(change))
    except broker_users.BrokerAdminError as err:
        raise EnrolmentError("broker", str(err)) from err
