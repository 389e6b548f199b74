"""Store identities on a real database (SQLite, then PostgreSQL): a one-time token
gives one bundle whose certificate the CA signed for the store; a token is spent once
and expires; revocation and rotation put certificates into the CRL; ingest refuses the
birth of a store not enrolled; the API refuses a revoked store's device tokens
(decision 0035). The broker side is proven in tests/integration/test_enrolment.py."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloud import pki
from cloud.db import make_engine, make_session_factory, upgrade
from cloud.db.engine import writer
from cloud.enrolment import service
from cloud.enrolment.errors import EnrolmentError
from cloud.enrolment.settings import EnrolmentSettings
from cloud.ingest.batch import BatchProcessor
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from edge_agent.enrolment import EnrolError, install
from protocols import encode, topics
from protocols.clock import ManualClock
from protocols.messages import Birth
from tests.cloud.conftest import ADMIN, DEVICE_S1, TECH, auth, make_settings, metric

NOW = 1_767_225_600_000


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(writer(engine))


@pytest.fixture
def settings(tmp_path: Path) -> EnrolmentSettings:
    pki.init_ca(tmp_path / "pki")
    return EnrolmentSettings(ca_dir=str(tmp_path / "pki"),
                             store_broker_url="mqtts://cloud.example.net:8883",
                             broker_admin_password=SecretStr("admin-secret-1"))


def _provision(sessions: sessionmaker[Session], settings: EnrolmentSettings, store: str,
               now_ms: int = NOW) -> str:
    with sessions.begin() as session:
        return service.provision(session, store, settings=settings, now_ms=now_ms).token


def _enrol(sessions: sessionmaker[Session], settings: EnrolmentSettings, token: str,
           now_ms: int = NOW) -> tuple[bytes, service.BrokerChange]:
    with sessions.begin() as session:
        return service.enrol(session, token, settings=settings, now_ms=now_ms)


def test_a_token_gives_one_bundle_signed_for_the_store(
        sessions: sessionmaker[Session], settings: EnrolmentSettings, tmp_path: Path) -> None:
    token = _provision(sessions, settings, "S001")
    data, change = _enrol(sessions, settings, token)
    assert change == service.BrokerChange("S001", enable=True, crl_changed=False)
    assert token.encode() not in data
    paths = install(data, tmp_path / "box")
    assert stat.S_IMODE(paths["store.key"].stat().st_mode) == 0o600
    assert paths["broker.url"].read_text().strip() == "mqtts://cloud.example.net:8883"
    cert = x509.load_pem_x509_certificate(paths["store.crt"].read_bytes())
    ca = x509.load_pem_x509_certificate(paths["ca.crt"].read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "S001"
    key = serialization.load_pem_private_key(paths["store.key"].read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == cert.public_key()
    # Spent: the same token again is unknown.
    with pytest.raises(EnrolmentError) as refused:
        _enrol(sessions, settings, token)
    assert refused.value.reason == "unknown_token"


def test_a_token_expires(sessions: sessionmaker[Session], settings: EnrolmentSettings) -> None:
    token = _provision(sessions, settings, "S001")
    with pytest.raises(EnrolmentError) as refused:
        _enrol(sessions, settings, token, now_ms=NOW + settings.token_ttl_s * 1000)
    assert refused.value.reason == "token_expired"


def test_a_new_provision_voids_the_unused_token(
        sessions: sessionmaker[Session], settings: EnrolmentSettings) -> None:
    first = _provision(sessions, settings, "S001")
    second = _provision(sessions, settings, "S001")
    with pytest.raises(EnrolmentError):
        _enrol(sessions, settings, first)
    _enrol(sessions, settings, second)


def test_rotation_and_revocation_put_certificates_in_the_crl(
        sessions: sessionmaker[Session], settings: EnrolmentSettings, tmp_path: Path) -> None:
    crl_path = settings.crl_path
    assert crl_path is not None
    first, _ = _enrol(sessions, settings, _provision(sessions, settings, "S001"))
    second, change = _enrol(sessions, settings, _provision(sessions, settings, "S001"))
    assert change.crl_changed  # the first certificate is taken back
    with sessions() as session:
        service.write_crl(session, settings)
    serials = {r.serial_number for r in x509.load_pem_x509_crl(crl_path.read_bytes())}
    old = x509.load_pem_x509_certificate(install(first, tmp_path / "a")["store.crt"].read_bytes())
    new = x509.load_pem_x509_certificate(install(second, tmp_path / "b")["store.crt"]
                                         .read_bytes())
    assert serials == {old.serial_number}
    with sessions.begin() as session:
        assert service.revoke(session, "S001", now_ms=NOW).crl_changed
    with sessions() as session:
        service.write_crl(session, settings)
        assert not service.is_enrolled(session, "S001")
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    assert {r.serial_number for r in crl} == {old.serial_number, new.serial_number}
    ca_key = x509.load_pem_x509_certificate((tmp_path / "pki" / "ca.crt").read_bytes()
                                            ).public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(ca_key)


def test_provisioning_needs_a_ca_and_the_stores_broker_url(
        sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session, pytest.raises(EnrolmentError) as refused:
        service.provision(session, "S001", settings=EnrolmentSettings(), now_ms=NOW)
    assert refused.value.reason == "not_configured"


def test_a_bundle_that_is_not_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EnrolError) as refused:
        install(b"not a tarball", tmp_path / "box")
    assert refused.value.reason == "bad_bundle"


def test_ingest_refuses_the_birth_of_a_store_not_enrolled(
        sessions: sessionmaker[Session], settings: EnrolmentSettings) -> None:
    processor = BatchProcessor(sessions, clock=ManualClock(), max_payload=64 * 1024,
                               require_enrolment=True)
    birth = encode(Birth(bd_seq=1, ts=1, agent_version="1.0"))
    result = processor.process([(topics.state("S001"), birth)])
    assert [(r.store_id, r.bd_seq, r.reason) for r in result.refused] == [
        ("S001", 1, "not_enrolled")]
    assert result.births == [] and result.outcome.rejected["not_enrolled"] == 1
    _enrol(sessions, settings, _provision(sessions, settings, "S001"))
    result = processor.process([(topics.state("S001"), birth)])
    assert (result.refused, result.births) == ([], [("S001", 1)])


async def test_provision_is_hq_admin_only_and_a_revoked_stores_device_token_is_refused(
        db_url: str, settings: EnrolmentSettings, engine: Engine) -> None:
    registry = CollectorRegistry()
    app = create_app(make_settings(db_url, enrolment=settings), registry=registry,
                     publisher=MemoryPublisher(), migrate=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        url = "/api/v1/stores/s1/provision"
        assert (await client.post(url, headers=auth(TECH))).status_code == 403
        answer = await client.post(url, headers=auth(ADMIN))
        assert answer.status_code == 200, answer.text
        assert answer.json()["store_id"] == "s1" and len(answer.json()["token"]) >= 32
        assert metric(registry, "storefleet_enrolment_actions_total", action="provision",
                      outcome="ok") == 1
        refused = await client.post("/api/v1/enrol", json={"token": "x" * 43})
        assert refused.status_code == 401 and refused.json()["type"].endswith("/unknown_token")
        assert metric(registry, "storefleet_enrolment_actions_total", action="enrol",
                      outcome="unknown_token") == 1
        # The device token of s1 works until s1 is revoked, then is refused.
        orders = "/api/v1/stores/s1/stock"
        assert (await client.get(orders, headers=auth(DEVICE_S1))).status_code != 401
        with make_session_factory(writer(engine)).begin() as session:
            service.revoke(session, "s1", now_ms=NOW)
        gone = await client.get(orders, headers=auth(DEVICE_S1))
        assert gone.status_code == 401 and gone.json()["type"].endswith("/store_revoked")


def test_the_stores_broker_url_is_checked_at_start() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="store_broker_url"):
        EnrolmentSettings(store_broker_url="http://cloud.example.net")
    assert EnrolmentSettings.from_env({"STOREFLEET_STORE_BROKER_URL": "mqtts://c:8883"},
                                      "STOREFLEET_").store_broker_url == "mqtts://c:8883"
