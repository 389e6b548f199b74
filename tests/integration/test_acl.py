"""Per-store identities and the shipped broker rights (``cloud.broker_users`` on
Mosquitto's dynamic security plugin, decision 0027): a store box can publish only its
upward channels and subscribe only to its own downward ones, refused at SUBSCRIBE time
otherwise (``$share`` included), so it cannot take any of the ingest's events.

The broker runs deploy/mosquitto/mosquitto.conf as shipped (paths and ports changed).
Every store test runs twice (decision 0032): ``password``, the store logs in with a user
name and password on the cloud services' listener, and ``mtls``, the store connects to
the TLS listener with its certificate (made by ``cloud.pki``, CN = store id) and has no
password, as a production store does. The cloud identity always uses its password."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from cloud import broker_users
from protocols import topics
from protocols.broker import BrokerAddress
from tests.integration.conftest import wait_for
from tests.services import Mosquitto, shipped_cloud_broker

pytestmark = pytest.mark.mosquitto

USERS = {"storefleet-cloud": "cloud-secret-1", "S001": "s001-secret-1", "S002": "s002-secret-1"}
ADMIN = ("admin", "admin-secret-1")  # the dynamic security plugin's admin (mosquitto_ctrl)
STORES = ("S001", "S002")


@pytest.fixture
def dynsec_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """The cloud broker as deploy/mosquitto/ ships it, its plugin initialised by
    ``mosquitto_ctrl dynsec init`` as deploy/mosquitto/README.md says: only its admin
    exists yet."""
    broker = shipped_cloud_broker(tmp_path / "cloud-broker", admin=ADMIN)
    broker.start()
    yield broker
    broker.kill()


def admin_address(broker: Mosquitto) -> BrokerAddress:
    return BrokerAddress(broker.host, broker.port, ADMIN[0], ADMIN[1])


@pytest.fixture(params=["password", "mtls"])
def transport(request: pytest.FixtureRequest) -> str:
    """How the stores connect: a password on 1883, or their certificate on 8883."""
    return str(request.param)


@pytest.fixture
async def secured(dynsec_broker: Mosquitto, transport: str) -> Mosquitto:
    """The set-up and the users of ``cloud.broker_users`` (the same commands as
    ``storefleet cloud broker ...``) on a fresh dynamic-security broker; the stores
    without a password when they use certificates."""
    commands = [*broker_users.setup_commands(),
                *broker_users.cloud_user_commands("storefleet-cloud", USERS["storefleet-cloud"])]
    for store in STORES:
        commands += broker_users.store_user_commands(
            store, USERS[store] if transport == "password" else None)
    await broker_users.send_commands(admin_address(dynsec_broker), commands=commands)
    dynsec_broker.transport = transport  # type: ignore[attr-defined]
    return dynsec_broker


def as_user(broker: Mosquitto, user: str) -> dict[str, Any]:
    """``aiomqtt.Client`` keyword arguments for ``user`` on ``broker``: a store over the
    test's transport (its certificate on the TLS listener under ``mtls``), the cloud
    identity with its password on the password listener."""
    if user in STORES and getattr(broker, "transport", "password") == "mtls":
        assert broker.pki is not None
        address = BrokerAddress.parse(broker.tls_url, setting="test").with_tls(
            ca_file=broker.pki / "ca.crt", cert_file=broker.pki / "stores" / f"{user}.crt",
            key_file=broker.pki / "stores" / f"{user}.key", prefix="test")
    else:
        address = BrokerAddress(broker.host, broker.port, user, USERS[user])
    return address.client_options()


def _connect_rc(broker: Mosquitto, user: str | None, password: str | None) -> int:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{user}")
    if user is not None:
        client.username_pw_set(user, password)
    result: list[int] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: result.append(rc.value)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        deadline = 50
        while not result and deadline:
            deadline -= 1
            asyncio.run(asyncio.sleep(0.05))
    finally:
        client.loop_stop()
        client.disconnect()
    return result[0] if result else -1


async def _try_publish(broker: Mosquitto, user: str, topic: str, payload: bytes) -> None:
    try:
        async with aiomqtt.Client(**as_user(broker, user), identifier=f"{user}-pub") as client:
            await client.publish(topic, payload, qos=1, timeout=2)
    except aiomqtt.MqttError:
        pass


def test_anonymous_and_wrong_password_are_refused(secured: Mosquitto, transport: str) -> None:
    assert _connect_rc(secured, None, None) != 0
    assert _connect_rc(secured, "S001", "wrong") != 0
    # A certificate identity has no password: the password listener refuses it.
    assert (_connect_rc(secured, "S001", USERS["S001"]) == 0) == (transport == "password")
    assert _connect_rc(secured, "storefleet-cloud", USERS["storefleet-cloud"]) == 0


async def test_a_store_cannot_read_or_write_another_stores_topics(secured: Mosquitto) -> None:
    seen_by_cloud: list[str] = []
    seen_by_s001: list[str] = []
    ready = asyncio.Event()

    async def cloud() -> None:
        async with aiomqtt.Client(**as_user(secured, "storefleet-cloud"),
                                  identifier="cloud") as c:
            await c.subscribe("sf/v1/#", qos=1)
            ready.set()
            async for msg in c.messages:
                seen_by_cloud.append(str(msg.topic))

    async def s001_snoop() -> None:
        async with aiomqtt.Client(**as_user(secured, "S001"), identifier="S001-snoop") as c:
            await c.subscribe("sf/v1/S002/#", qos=1)  # another store's namespace
            await c.subscribe(topics.cmd("S001", "agent"), qos=1)  # its own: allowed
            async for msg in c.messages:
                seen_by_s001.append(str(msg.topic))

    tasks = [asyncio.create_task(cloud()), asyncio.create_task(s001_snoop())]
    await ready.wait()
    await asyncio.sleep(0.3)
    # Each attempt on its own connection: Mosquitto 2.0 may drop a client that
    # publishes where its ACL denies it, which is fine - the message goes nowhere.
    for topic, payload in [
        (topics.evt("S001", "sale"), b"own"),  # allowed
        (topics.evt("S002", "sale"), b"forged"),  # another store's uplink: denied
        (topics.cmd("S002", "agent"), b"forged-cmd"),  # a downlink: denied
        (topics.cmd("S001", "agent"), b"self-cmd"),  # even its own downlink: denied
    ]:
        await _try_publish(secured, "S001", topic, payload)
    async with aiomqtt.Client(**as_user(secured, "storefleet-cloud"), identifier="api") as api:
        await api.publish(topics.cmd("S002", "agent"), b"for-s002", qos=1)
        await api.publish(topics.cmd("S001", "agent"), b"for-s001", qos=1)

    await wait_for(lambda: topics.cmd("S001", "agent") in seen_by_s001, timeout=5,
                   what="S001 receives its own command")
    await asyncio.sleep(0.5)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    assert topics.evt("S001", "sale") in seen_by_cloud
    assert topics.evt("S002", "sale") not in seen_by_cloud, "S001 forged an S002 event"
    assert seen_by_cloud.count(topics.cmd("S002", "agent")) == 1  # only the cloud's own
    assert seen_by_cloud.count(topics.cmd("S001", "agent")) == 1  # S001's self-command denied
    assert seen_by_s001 == [topics.cmd("S001", "agent")], "S001 read another store's topics"


async def test_agent_and_ingest_work_with_their_own_identities(
    secured: Mosquitto, tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
    transport: str,
) -> None:
    """The real agent (as S001) and ingest (as storefleet-cloud, shared subscription)
    run end to end under the shipped ACL."""
    import sqlalchemy as sa

    from tests.integration.harness import Proc

    local = mosquitto_factory()
    db = f"sqlite:///{tmp_path / 'cloud.db'}"
    url = f"mqtt://127.0.0.1:{secured.port}"
    ingest = Proc("ingest", ["cloud", "ingest", "--db", db, "--mqtt", url, "--metrics-port", "0"],
                  tmp_path / "logs", env={"STOREFLEET_MQTT_USERNAME": "storefleet-cloud",
                                          "STOREFLEET_MQTT_PASSWORD": USERS["storefleet-cloud"]})
    if transport == "mtls":
        assert secured.pki is not None
        cloud = [secured.tls_url, "--cloud-ca", str(secured.pki / "ca.crt"),
                 "--cloud-cert", str(secured.pki / "stores" / "S001.crt"),
                 "--cloud-key", str(secured.pki / "stores" / "S001.key")]
    else:
        cloud = [f"mqtt://S001:{USERS['S001']}@127.0.0.1:{secured.port}"]
    agent = Proc("agent", ["edge", "run", "--store", "S001", "--local-bus", local.url,
                           "--cloud", *cloud,
                           "--data-dir", str(tmp_path / "edge"), "--metrics-port", "0"],
                 tmp_path / "logs")
    engine = sa.create_engine(db)

    def online() -> bool:
        try:
            with engine.connect() as conn:
                return bool(conn.execute(sa.text(
                    "SELECT online FROM stores WHERE store_id = 'S001'")).scalar())
        except sa.exc.OperationalError:
            return False

    try:
        ingest.start()
        agent.start()
        await wait_for(online, timeout=30, what="S001 online through the secured broker")
    finally:
        agent.terminate()
        ingest.terminate()
        engine.dispose()


# ---- subscribe-time refusal (issue 12 item 5, decision 0027) ------------------

INGEST_SHARE = topics.shared(topics.PREFIX + "/+/evt/+", "storefleet-ingest")
FORBIDDEN_FILTERS = [
    INGEST_SHARE,  # the ingest's own share: would take half of every store's events
    topics.shared(topics.PREFIX + "/#", "storefleet-ingest"),
    topics.shared(topics.cmd("S001", "agent"), "mine"),  # even its own topics, shared
    "sf/v1/S002/#",  # another store's namespace
    topics.cmd("S002", "agent"),
    "sf/v1/+/evt/+",  # every store's events
    "#",
]
REFUSED = {"3.1.1": 0x80, "5": 0x87}  # SUBACK failure / Not authorized


def _codes(granted: Sequence[int | ReasonCode]) -> list[int]:
    """The SUBACK codes as paho reports them (granted QoS, or 128 / 135 refused)."""
    return [c if isinstance(c, int) else c.value for c in granted]


@pytest.mark.parametrize("version", ["3.1.1", "5"])
async def test_a_store_is_refused_at_subscribe_time_outside_its_downward_topics(
    secured: Mosquitto, version: str
) -> None:
    protocol = aiomqtt.ProtocolVersion.V5 if version == "5" else aiomqtt.ProtocolVersion.V311
    own = topics.store_downlink_filters("S001")
    async with aiomqtt.Client(**as_user(secured, "S001"), identifier="S001-probe",
                              protocol=protocol) as store:
        granted = await store.subscribe([(f, 1) for f in [*FORBIDDEN_FILTERS, *own]])
    codes = _codes(granted)  # one per filter, in order
    assert dict(zip(FORBIDDEN_FILTERS, codes, strict=False)) == {
        f: REFUSED[version] for f in FORBIDDEN_FILTERS}
    assert codes[len(FORBIDDEN_FILTERS):] == [1] * len(own), "a store must keep its own topics"


async def test_a_store_cannot_take_the_ingest_share_and_nothing_is_lost(
    secured: Mosquitto,
) -> None:
    """S001 tries to join the ingest's shared subscription with a persistent session,
    then goes offline; the ingest identity still receives every event of every store."""
    received: set[bytes] = set()
    sent = 0

    async def publish(count: int) -> None:
        nonlocal sent
        for store in ("S001", "S002"):
            async with aiomqtt.Client(**as_user(secured, store),
                                      identifier=f"{store}-pub") as c:
                for _ in range(count // 2):
                    await c.publish(topics.evt(store, "sale"), f"{store}-{sent}".encode(), qos=1)
                    sent += 1

    async with aiomqtt.Client(**as_user(secured, "storefleet-cloud"), identifier="ingest-1",
                              clean_session=False) as ingest:
        granted = await ingest.subscribe(INGEST_SHARE, qos=1)
        assert _codes(granted) == [1]

        async def collect() -> None:
            async for msg in ingest.messages:
                received.add(bytes(msg.payload))  # type: ignore[arg-type]

        collector = asyncio.create_task(collect(), name="ingest-collect")
        try:
            async with aiomqtt.Client(**as_user(secured, "S001"), identifier="S001-hijack",
                                      clean_session=False) as hijack:
                refused = await hijack.subscribe(INGEST_SHARE, qos=1)
                await publish(1000)  # while the hijacker is online
            await publish(400)  # while its persistent session is offline
            await wait_for(lambda: len(received) >= sent, timeout=20,
                           what=f"ingest receives all {sent} events ({len(received)} so far)")
        finally:
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
    assert _codes(refused) == [0x80]  # paho's granted QoS 128
    assert len(received) == sent == 1400


def test_the_broker_cli_creates_the_users_as_deploy_readme_says(
    dynsec_broker: Mosquitto, tmp_path: Path
) -> None:
    """``storefleet cloud broker setup / add-cloud / add-store`` (deploy/mosquitto/README.md)
    on a broker fresh from ``mosquitto_ctrl dynsec init``; passwords from files only."""
    secrets = {name: tmp_path / f"{name}.secret" for name in (ADMIN[0], *USERS)}
    secrets[ADMIN[0]].write_text(ADMIN[1] + "\n")
    for user, password in USERS.items():
        secrets[user].write_text(password + "\n")
    admin = ["--mqtt", dynsec_broker.url, "--admin-password-file", str(secrets[ADMIN[0]])]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "storefleet", "cloud", "broker", *args],
                              capture_output=True, text=True, timeout=60, check=False)

    assert _connect_rc(dynsec_broker, "S001", USERS["S001"]) != 0  # no such user yet
    for args in (["setup", *admin], ["setup", *admin],  # the set-up may run again
                 ["add-cloud", "storefleet-cloud", "--password-file",
                  str(secrets["storefleet-cloud"]), *admin],
                 ["add-store", "S001", "--password-file", str(secrets["S001"]), *admin]):
        done = cli(*args)
        assert done.returncode == 0, done.stderr
    again = cli("add-store", "S001", "--password-file", str(secrets["S001"]), *admin)
    assert again.returncode == 1 and "already exists" in again.stderr
    wrong = cli("add-store", "S002", "--mqtt", dynsec_broker.url,
                "--admin-password-file", str(secrets["S001"]))  # not the admin's password
    assert wrong.returncode == 1 and "refused" in wrong.stderr

    async def subscribe(user: str, filter_: str) -> list[int]:
        async with aiomqtt.Client(dynsec_broker.host, dynsec_broker.port, username=user,
                                  password=USERS[user], identifier=f"{user}-cli-probe") as c:
            return _codes(await c.subscribe(filter_, qos=1))

    assert _connect_rc(dynsec_broker, "S001", USERS["S001"]) == 0
    assert asyncio.run(subscribe("S001", INGEST_SHARE)) == [0x80]
    assert asyncio.run(subscribe("S001", topics.cmd("S001", "agent"))) == [1]
    assert asyncio.run(subscribe("storefleet-cloud", INGEST_SHARE)) == [1]
