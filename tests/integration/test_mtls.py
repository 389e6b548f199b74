"""Stores reach the cloud broker over mTLS, as deploy/mosquitto/ ships it (issue 13
failure 8, decision 0032).

The broker runs the shipped ``mosquitto.conf`` (dynamic security plugin, the cloud
services' password listener, the stores' mTLS listener), with certificates made by
``cloud.pki`` in the test. The stores exist as certificate identities (``add-store``
without a password); the cloud services log in with their password.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
import sqlalchemy as sa

from cloud import broker_users, pki
from cloud.publish import MqttPublisher
from cloud.settings import CloudSettings
from firmware_sim.store import StoreSimulator
from protocols import topics
from protocols.broker import BrokerAddress
from tests.integration.conftest import wait_for
from tests.integration.harness import Proc
from tests.services import Mosquitto, free_port, shipped_cloud_broker

pytestmark = pytest.mark.mosquitto

ADMIN = ("admin", "admin-secret-1")
CLOUD = ("storefleet-cloud", "cloud-secret-1")
INGEST_SHARE = topics.shared(topics.PREFIX + "/+/evt/+", "storefleet-ingest")
REFUSED = 0x80  # SUBACK failure, MQTT 3.1.1


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    """The shipped broker, set up: roles, the cloud user, stores S001 and S002 with no
    password (they log in with their certificates)."""
    shipped = shipped_cloud_broker(tmp_path / "cloud-broker", admin=ADMIN)
    shipped.start()
    commands = [*broker_users.setup_commands(), *broker_users.cloud_user_commands(*CLOUD)]
    for store in ("S001", "S002"):
        commands += broker_users.store_user_commands(store, None)
    try:
        await broker_users.send_commands(BrokerAddress(shipped.host, shipped.port, *ADMIN),
                                         commands=commands)
        yield shipped
    finally:
        shipped.kill()


def store_tls(broker: Mosquitto, store: str, *, pki_dir: Path | None = None) -> BrokerAddress:
    """``store``'s certificate on the mTLS listener (``pki_dir``: another CA's)."""
    assert broker.pki is not None
    certs = pki_dir or broker.pki
    return BrokerAddress.parse(broker.tls_url, setting="test").with_tls(
        ca_file=broker.pki / "ca.crt", cert_file=certs / "stores" / f"{store}.crt",
        key_file=certs / "stores" / f"{store}.key", prefix="test")


def cloud_client(broker: Mosquitto, name: str) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, username=CLOUD[0], password=CLOUD[1],
                          identifier=name)


def agent_proc(broker: Mosquitto, local: Mosquitto, tmp_path: Path, *, metrics_port: int,
               certs: Path) -> Proc:
    conf = tmp_path / "agent.toml"
    conf.write_text("[agent]\nkeepalive_s = 10\nreconnect_max_s = 2.0\n")
    assert broker.pki is not None
    return Proc("agent", [
        "edge", "run", "--store", "S001", "--cloud", broker.tls_url,
        "--cloud-ca", str(broker.pki / "ca.crt"),
        "--cloud-cert", str(certs / "stores" / "S001.crt"),
        "--cloud-key", str(certs / "stores" / "S001.key"),
        "--local-bus", local.url, "--data-dir", str(tmp_path / "edge"),
        "--metrics-port", str(metrics_port), "--config", str(conf),
    ], tmp_path / "logs")


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.terminate(timeout=10)


async def test_the_agent_connects_over_mtls_and_ingest_stores_its_events(
    broker: Mosquitto, tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
    procs: list[Proc],
) -> None:
    local = mosquitto_factory()
    db = f"sqlite:///{tmp_path / 'cloud.db'}"
    ingest = Proc("ingest", ["cloud", "ingest", "--db", db, "--mqtt", broker.url,
                             "--metrics-port", "0"], tmp_path / "logs",
                  env={"STOREFLEET_MQTT_USERNAME": CLOUD[0],
                       "STOREFLEET_MQTT_PASSWORD": CLOUD[1]})
    assert broker.pki is not None
    agent = agent_proc(broker, local, tmp_path, metrics_port=free_port(), certs=broker.pki)
    procs += [ingest.start(), agent.start()]
    engine = sa.create_engine(db)

    def query(sql: str) -> list[Any]:
        try:
            with engine.connect() as conn:
                return [row[0] for row in conn.execute(sa.text(sql))]
        except sa.exc.OperationalError:  # not migrated yet
            return []

    try:
        await wait_for(lambda: query("SELECT online FROM stores WHERE store_id = 'S001'")
                       == [True], timeout=30, what="S001 online over mTLS")
        sim = StoreSimulator(bus_url=local.url, store_id="S001", devices=2, rate=50,
                             max_events=60, tele_interval_s=5.0)
        await asyncio.wait_for(sim.run(asyncio.Event()), timeout=60)
        produced = set(sim.produced_ids)
        assert len(produced) == 60
        await wait_for(lambda: produced <= set(query(
            "SELECT id FROM events WHERE store_id = 'S001'")), timeout=30,
            what="every event the store produced in the cloud database")
    finally:
        engine.dispose()
    mosquitto_log = (broker.workdir / "mosquitto.log").read_text()
    # The broker took the agent's user name from its certificate (no password sent).
    assert re.search(rf"on port {broker.tls_port}\.\n.*as S001 \(.*u'S001'\)", mosquitto_log)


async def test_a_store_certificate_acts_only_as_its_store(broker: Mosquitto) -> None:
    """S002's certificate cannot publish S001's events, subscribe to S001's topics or
    join the ingest's share; what it may do, it can."""
    seen: list[str] = []
    async with cloud_client(broker, "cloud-watch") as cloud:
        await cloud.subscribe(topics.PREFIX + "/#", qos=1)

        async def collect() -> None:
            async for message in cloud.messages:
                seen.append(str(message.topic))

        collector = asyncio.create_task(collect(), name="cloud-watch")
        try:
            async with aiomqtt.Client(**store_tls(broker, "S002").client_options(),
                                      identifier="S002-probe") as s002:
                codes = await s002.subscribe([(INGEST_SHARE, 1), ("sf/v1/S001/#", 1),
                                              (topics.cmd("S002", "agent"), 1)])
                assert [c if isinstance(c, int) else c.value for c in codes] == [
                    REFUSED, REFUSED, 1]
                await s002.publish(topics.evt("S002", "sale"), b"own", qos=1)
            # A forbidden publish may cost the connection: its own connection.
            try:
                async with aiomqtt.Client(**store_tls(broker, "S002").client_options(),
                                          identifier="S002-forge") as forger:
                    await forger.publish(topics.evt("S001", "sale"), b"forged", qos=1,
                                         timeout=2)
            except aiomqtt.MqttError:
                pass
            await wait_for(lambda: topics.evt("S002", "sale") in seen, timeout=5,
                           what="S002's own event reaches the cloud")
            await asyncio.sleep(0.5)
        finally:
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
    assert topics.evt("S001", "sale") not in seen, "S002's certificate forged an S001 event"


async def test_no_certificate_or_another_cas_is_refused(broker: Mosquitto, tmp_path: Path
                                                        ) -> None:
    other = tmp_path / "other-ca"
    pki.init_ca(other)
    pki.issue_store(other, "S001")  # the right CN, the wrong CA
    assert broker.pki is not None
    no_certificate = BrokerAddress.parse(broker.tls_url, setting="test").with_tls(
        ca_file=broker.pki / "ca.crt", prefix="test")
    for address in (no_certificate, store_tls(broker, "S001", pki_dir=other)):
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(**address.client_options(), identifier="intruder",
                                      timeout=3):
                pass
    # The broker is checked too: a client that trusts another CA refuses the broker.
    wrong_ca = BrokerAddress.parse(broker.tls_url, setting="test").with_tls(
        ca_file=other / "ca.crt", cert_file=broker.pki / "stores" / "S001.crt",
        key_file=broker.pki / "stores" / "S001.key", prefix="test")
    with pytest.raises(aiomqtt.MqttError, match="CERTIFICATE_VERIFY_FAILED"):
        async with aiomqtt.Client(**wrong_ca.client_options(), identifier="S001", timeout=3):
            pass
    # The store's own certificate gets in.
    async with aiomqtt.Client(**store_tls(broker, "S001").client_options(), identifier="S001"):
        pass


async def test_a_refused_certificate_is_logged_once_and_counted(
    broker: Mosquitto, tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
    procs: list[Proc],
) -> None:
    """An agent whose certificate the broker refuses: one warning for the outage naming
    the TLS alert, and every failed attempt counted as ``reason="tls"``."""
    other = tmp_path / "other-ca"
    pki.init_ca(other)
    pki.issue_store(other, "S001")
    port = free_port()
    agent = agent_proc(broker, mosquitto_factory(), tmp_path, metrics_port=port, certs=other)
    procs.append(agent.start())

    def tls_failures() -> float:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return 0.0
        found = re.search(
            r'^storefleet_uplink_connect_failures_total\{reason="tls"\} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    await wait_for(lambda: tls_failures() >= 2, timeout=60,
                   what="two TLS failures counted")
    log = agent.log.read_text()
    warnings = [line for line in log.splitlines()
                if "WARNING edge_agent.uplink" in line]
    # One outage. On a loaded box the first attempt may time out before paho reads the
    # broker's alert: then one more warning says the cause is now TLS, and no more.
    assert sum("outage started" in line for line in warnings) == 1, warnings
    tls = [line for line in warnings if "TLS handshake with " + broker.tls_url in line]
    assert len(tls) == 1 and len(warnings) <= 2, warnings
    assert "UNKNOWN_CA" in tls[0].upper()


async def test_the_cloud_publisher_connects_with_a_client_certificate(broker: Mosquitto) -> None:
    """The cloud services may use the mTLS listener too (STOREFLEET_MQTT_CA / _CERT /
    _KEY): the API's publisher, as ``storefleet-cloud`` by its certificate's CN, sends a
    command that S001, by its own certificate, receives."""
    assert broker.pki is not None
    pki.issue_store(broker.pki, "storefleet-cloud")
    settings = CloudSettings.from_env({
        "STOREFLEET_MQTT_URL": broker.tls_url,
        "STOREFLEET_MQTT_CA": str(broker.pki / "ca.crt"),
        "STOREFLEET_MQTT_CERT": str(broker.pki / "stores" / "storefleet-cloud.crt"),
        "STOREFLEET_MQTT_KEY": str(broker.pki / "stores" / "storefleet-cloud.key"),
    })
    publisher = MqttPublisher(settings, client_id="api-tls")
    async with aiomqtt.Client(**store_tls(broker, "S001").client_options(),
                              identifier="S001") as store:
        await store.subscribe(topics.cmd("S001", "agent"), qos=1)
        try:
            await publisher.publish(topics.cmd("S001", "agent"), b"over-mtls", qos=1,
                                    retain=False)
        finally:
            await publisher.aclose()
        async with asyncio.timeout(5):
            message = await anext(aiter(store.messages))
    assert message.payload == b"over-mtls"
