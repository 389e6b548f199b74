"""Store identities made by `fleet provision`, proven against real Mosquitto
(issue 14, decision 0035).

The shipped broker (dynamic security plugin, mTLS listener) with a ``crlfile`` written
by the cloud, the API with ingest as ``storefleet cloud serve`` runs it, and only the
real entry points: ``fleet provision`` issues a one-time token, ``storefleet edge
enrol`` fetches the bundle once, the agent runs on it and its events are stored;
``fleet revoke`` kicks the store and keeps its certificate out (CRL) and its device
token refused; provisioning again rotates the identity: the new bundle connects, the old
certificate does not. A store never enrolled has its birth refused (``not_enrolled``).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
import sqlalchemy as sa

from cloud import broker_users
from edge_agent.enrolment import install
from firmware_sim.store import StoreSimulator
from protocols import decode, encode, topics
from protocols.broker import BrokerAddress
from protocols.messages import Birth, BirthRefused
from tests.integration.conftest import wait_for
from tests.integration.harness import Proc
from tests.services import Mosquitto, free_port, shipped_cloud_broker

pytestmark = pytest.mark.mosquitto

ADMIN = ("admin", "admin-secret-1")
CLOUD = ("storefleet-cloud", "cloud-secret-1")
HQ_TOKEN = "enrolment-hq-admin-token-1"
DEVICE_TOKEN = "enrolment-device-s001-token-1"


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    """The shipped broker with its CRL (empty at first) and pid file to signal."""
    shipped = shipped_cloud_broker(tmp_path / "cloud-broker", admin=ADMIN)
    assert shipped.pki is not None
    shipped.start()
    # S002 exists at the broker (its certificate is the fixture's) but is never enrolled.
    commands = [*broker_users.setup_commands(), *broker_users.cloud_user_commands(*CLOUD),
                *broker_users.store_user_commands("S002", None)]
    try:
        await broker_users.send_commands(BrokerAddress(shipped.host, shipped.port, *ADMIN),
                                         commands=commands)
        yield shipped
    finally:
        shipped.kill()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.terminate(timeout=10)


def api_proc(broker: Mosquitto, tmp_path: Path, *, port: int, db: str) -> Proc:
    assert broker.pki is not None
    return Proc("api", ["cloud", "serve", "--port", str(port), "--db", db, "--mqtt", broker.url,
                        "--ingest", "--dev", "--log-level", "info"], tmp_path / "logs", env={
        "STOREFLEET_API_TOKENS": f"{HQ_TOKEN}:hq-admin,{DEVICE_TOKEN}:device@S001",
        "STOREFLEET_MQTT_USERNAME": CLOUD[0], "STOREFLEET_MQTT_PASSWORD": CLOUD[1],
        "STOREFLEET_CA_DIR": str(broker.pki),
        "STOREFLEET_STORE_BROKER_URL": broker.tls_url,
        "STOREFLEET_BROKER_PID_FILE": str(broker.workdir / "mosquitto.pid"),
        "STOREFLEET_BROKER_ADMIN_USERNAME": ADMIN[0],
        "STOREFLEET_BROKER_ADMIN_PASSWORD": ADMIN[1],
        "STOREFLEET_REQUIRE_ENROLMENT": "1",
    })


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``fleet ...`` or ``storefleet ...`` as a user types it (the installed scripts)."""
    script = Path(sys.executable).parent / args[0]
    return subprocess.run([str(script), *args[1:]], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "NO_COLOR": "1"})


def identity(broker: Mosquitto, directory: Path) -> BrokerAddress:
    return BrokerAddress.parse((directory / "broker.url").read_text().strip(),
                               setting="test").with_tls(
        ca_file=directory / "ca.crt", cert_file=directory / "store.crt",
        key_file=directory / "store.key", prefix="test")


async def connects(address: BrokerAddress) -> bool:
    try:
        async with aiomqtt.Client(**address.client_options(), identifier="probe", timeout=5):
            return True
    except aiomqtt.MqttError:
        return False


def agent_proc(local: Mosquitto, tmp_path: Path, bundle: Path) -> Proc:
    conf = tmp_path / "agent.toml"
    conf.write_text("[agent]\nkeepalive_s = 10\nreconnect_max_s = 2.0\n")
    return Proc("agent", [
        "edge", "run", "--store", "S001", "--cloud", (bundle / "broker.url").read_text().strip(),
        "--cloud-ca", str(bundle / "ca.crt"), "--cloud-cert", str(bundle / "store.crt"),
        "--cloud-key", str(bundle / "store.key"), "--local-bus", local.url,
        "--data-dir", str(tmp_path / "edge"), "--metrics-port", str(free_port()),
        "--config", str(conf),
    ], tmp_path / "logs")


async def test_provision_enrol_revoke_and_rotate_on_real_mosquitto(
    broker: Mosquitto, tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
    procs: list[Proc],
) -> None:
    db = f"sqlite:///{tmp_path / 'cloud.db'}"
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    procs.append(api_proc(broker, tmp_path, port=port, db=db).start())
    await wait_for(lambda: _up(api_url), timeout=30, what="the API")
    engine = sa.create_engine(db)

    def query(sql: str) -> list[Any]:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(sa.text(sql))]

    fleet = ["fleet", "--api", api_url, "--token", HQ_TOKEN]
    http = httpx.AsyncClient(timeout=5)
    try:
        # 1. Provision: a one-time token; the box enrols with it, once.
        made = run_cli([fleet[0], "provision", "S001", "--json", *fleet[1:]])
        assert made.returncode == 0, made.stderr
        token = json.loads(made.stdout)["token"]
        assert token not in (tmp_path / "logs" / "api.log").read_text()
        first = tmp_path / "box-1"
        enrol = ["storefleet", "edge", "enrol", "--token", token, "--cloud-api", api_url]
        enrolled = run_cli([*enrol, "--dir", str(first)])
        assert enrolled.returncode == 0, enrolled.stderr
        assert stat.S_IMODE((first / "store.key").stat().st_mode) == 0o600
        again = run_cli([*enrol, "--dir", str(tmp_path / "box-again")])
        assert again.returncode == 1 and "401" in again.stderr, again.stderr

        # 2. The agent connects over mTLS with the bundle; its events are stored.
        local = mosquitto_factory()
        agent = agent_proc(local, tmp_path, first)
        procs.append(agent.start())
        await wait_for(lambda: query("SELECT online FROM stores WHERE store_id = 'S001'")
                       == [True], timeout=30, what="S001 online with its enrolled identity")
        sim = StoreSimulator(bus_url=local.url, store_id="S001", devices=2, rate=50,
                             max_events=30, tele_interval_s=5.0)
        await asyncio.wait_for(sim.run(asyncio.Event()), timeout=60)
        produced = set(sim.produced_ids)
        await wait_for(lambda: produced <= set(query(
            "SELECT id FROM events WHERE store_id = 'S001'")), timeout=30,
            what="the store's events in the cloud database")
        device = {"Authorization": f"Bearer {DEVICE_TOKEN}"}
        stock = f"{api_url}/api/v1/stores/S001/stock"
        assert (await http.get(stock, headers=device)).status_code != 401

        # 3. Revoke: kicked at once, cannot reconnect, device token refused.
        revoked = run_cli([fleet[0], "revoke", "S001", *fleet[1:]])
        assert revoked.returncode == 0, revoked.stderr
        took = await wait_for(lambda: query(
            "SELECT online FROM stores WHERE store_id = 'S001'") == [False], timeout=60,
            what="S001 offline after revoke")
        assert took < 60
        assert not await connects(identity(broker, first))
        answer = await http.get(stock, headers=device)
        assert answer.status_code == 401 and answer.json()["type"].endswith("/store_revoked")
        log = (broker.workdir / "mosquitto.log").read_text()
        assert "been disconnected by administrative action" in log

        # Exit codes as every fleet command's (decision 0038): 7 no such store, 6 a token
        # that may not.
        assert run_cli([fleet[0], "revoke", "S999", *fleet[1:]]).returncode == 7
        refused = run_cli([fleet[0], "provision", "S001", "--api", api_url,
                           "--token", DEVICE_TOKEN])
        assert refused.returncode == 6, refused.stderr

        # 4. Provision again: a new bundle (rotated key) works, the old certificate not.
        agent.terminate(timeout=10)
        bundle_file = tmp_path / "S001.tar.gz"
        rotated = run_cli([fleet[0], "provision", "S001", "--bundle", str(bundle_file),
                           *fleet[1:]])
        assert rotated.returncode == 0, rotated.stderr
        assert stat.S_IMODE(bundle_file.stat().st_mode) == 0o600
        second = tmp_path / "box-2"
        install(bundle_file.read_bytes(), second)
        assert (second / "store.key").read_bytes() != (first / "store.key").read_bytes()
        assert await connects(identity(broker, second))
        assert not await connects(identity(broker, first))
        # The provisioned identity has its store's rights only (decision 0027): the
        # ingest share and another store's topics are refused, its own are not.
        async with aiomqtt.Client(**identity(broker, second).client_options(),
                                  identifier="S001-acl") as client:
            codes = await client.subscribe([
                (topics.shared(topics.PREFIX + "/+/evt/+", "storefleet-ingest"), 1),
                ("sf/v1/S002/#", 1), (topics.cmd("S001", "agent"), 1)])
            assert [c if isinstance(c, int) else c.value for c in codes] == [0x80, 0x80, 1]
        assert (await http.get(stock, headers=device)).status_code != 401
    finally:
        engine.dispose()
        await http.aclose()


async def test_the_birth_of_a_store_not_enrolled_is_refused(
    broker: Mosquitto, tmp_path: Path, procs: list[Proc],
) -> None:
    """S002 has a certificate of the CA and a broker user, but was never provisioned:
    its birth is answered ``BirthRefused(not_enrolled)`` and no store is created."""
    db = f"sqlite:///{tmp_path / 'cloud.db'}"
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    procs.append(api_proc(broker, tmp_path, port=port, db=db).start())
    await wait_for(lambda: _up(api_url), timeout=30, what="the API")
    assert broker.pki is not None
    s002 = BrokerAddress.parse(broker.tls_url, setting="test").with_tls(
        ca_file=broker.pki / "ca.crt", cert_file=broker.pki / "stores" / "S002.crt",
        key_file=broker.pki / "stores" / "S002.key", prefix="test")
    async with aiomqtt.Client(**s002.client_options(), identifier="S002") as client:
        await client.subscribe(topics.ready("S002"), qos=1)
        answer: BirthRefused | None = None
        async with asyncio.timeout(30):
            while answer is None:
                # Ingest may still be starting: the birth is sent again until answered.
                await client.publish(topics.state("S002"),
                                     encode(Birth(bd_seq=1, ts=1, agent_version="1.0")),
                                     qos=1)
                try:
                    async with asyncio.timeout(2):
                        message = await anext(aiter(client.messages))
                except TimeoutError:
                    continue
                assert isinstance(message.payload, bytes)
                answer = decode(message.payload, BirthRefused)
    assert answer.reason == "not_enrolled" and answer.bd_seq == 1
    async with httpx.AsyncClient(timeout=5) as http:
        metrics = (await http.get(f"{api_url}/metrics")).text
    assert 'storefleet_ingest_births_refused_total{reason="not_enrolled"}' in metrics
    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text(
                "SELECT count(*) FROM stores WHERE store_id = 'S002'")).scalar() == 0
    finally:
        engine.dispose()


def _up(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
