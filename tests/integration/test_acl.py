"""Per-store identities and the shipped broker ACL (deploy/mosquitto/storefleet.acl):
a store box can publish and subscribe only under its own ``sf/v1/{store_id}/``."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import paho.mqtt.client as mqtt
import pytest

from protocols import topics
from tests.integration.conftest import wait_for
from tests.services import Mosquitto, unavailable

pytestmark = pytest.mark.mosquitto

ACL = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "storefleet.acl"
USERS = {"storefleet-cloud": "cloud-secret-1", "S001": "s001-secret-1", "S002": "s002-secret-1"}


@pytest.fixture
def secured(tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    passwd = tmp_path / "passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        unavailable("mosquitto_passwd is not installed (apt-get install mosquitto)")
    passwd.touch()
    for user, password in USERS.items():
        subprocess.run([tool, "-b", str(passwd), user, password], check=True)
    return mosquitto_factory(
        "allow_anonymous false\n"
        f"password_file {passwd}\n"
        f"acl_file {ACL}\n"
    )


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
        async with aiomqtt.Client(broker.host, broker.port, username=user, password=USERS[user],
                                  identifier=f"{user}-pub") as client:
            await client.publish(topic, payload, qos=1, timeout=2)
    except aiomqtt.MqttError:
        pass


def test_anonymous_and_wrong_password_are_refused(secured: Mosquitto) -> None:
    assert _connect_rc(secured, None, None) != 0
    assert _connect_rc(secured, "S001", "wrong") != 0
    assert _connect_rc(secured, "S001", USERS["S001"]) == 0


async def test_a_store_cannot_read_or_write_another_stores_topics(secured: Mosquitto) -> None:
    seen_by_cloud: list[str] = []
    seen_by_s001: list[str] = []
    ready = asyncio.Event()

    async def cloud() -> None:
        async with aiomqtt.Client(secured.host, secured.port, username="storefleet-cloud",
                                  password=USERS["storefleet-cloud"], identifier="cloud") as c:
            await c.subscribe("sf/v1/#", qos=1)
            ready.set()
            async for msg in c.messages:
                seen_by_cloud.append(str(msg.topic))

    async def s001_snoop() -> None:
        async with aiomqtt.Client(secured.host, secured.port, username="S001",
                                  password=USERS["S001"], identifier="S001-snoop") as c:
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
    async with aiomqtt.Client(secured.host, secured.port, username="storefleet-cloud",
                              password=USERS["storefleet-cloud"], identifier="api") as api:
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
    secured: Mosquitto, tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto]
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
    agent = Proc("agent", ["edge", "run", "--store", "S001", "--local-bus", local.url,
                           "--cloud", f"mqtt://S001:{USERS['S001']}@127.0.0.1:{secured.port}",
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
