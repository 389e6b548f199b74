"""Stores, devices, events (pagination), shadows and commands on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest
from prometheus_client import CollectorRegistry

from cloud.db import make_engine, upgrade
from cloud.db.engine import make_session_factory, writer
from cloud.ingest.batch import BatchProcessor
from cloud.main import create_app
from cloud.publish import MemoryPublisher, MqttPublisher
from protocols import encode, topics
from protocols.clock import ManualClock
from protocols.messages import Birth, CommandResult, DeviceInfo, Event
from tests.cloud.conftest import ADMIN, MANAGER, TECH, api_client, auth, make_settings
from tests.services import Mosquitto, free_port


def ingest(db_url: str, messages: list[tuple[str, bytes]], clock: ManualClock) -> None:
    """Store messages the way ingest does, without a broker."""
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        BatchProcessor(make_session_factory(writer(engine)), clock=clock,
                       max_payload=65536).process(messages)
    finally:
        engine.dispose()


def birth(store: str, devices: int, online: int) -> tuple[str, bytes]:
    devs = [DeviceInfo(device_id=f"d{i}", kind="cart", online=i < online) for i in range(devices)]
    return topics.state(store), encode(Birth(bd_seq=1, ts=1, agent_version="9", devices=devs))


async def test_stores_and_devices(db_url: str) -> None:
    ingest(db_url, [birth("s1", 3, 2), birth("s2", 1, 0)], ManualClock())
    async with api_client(create_app(make_settings(db_url), publisher=MemoryPublisher())) as c:
        stores = (await c.get("/api/v1/stores", headers=auth(MANAGER))).json()
        assert [(s["store_id"], s["online"], s["devices_total"], s["devices_online"])
                for s in stores] == [("s1", True, 3, 2), ("s2", True, 1, 0)]
        one = (await c.get("/api/v1/stores/s1", headers=auth(MANAGER))).json()
        assert one["birth"]["agent_version"] == "9" and "dead_bd_seq" not in one
        devs = (await c.get("/api/v1/stores/s1/devices", headers=auth(MANAGER))).json()
        assert [d["device_id"] for d in devs] == ["d0", "d1", "d2"]
        online = (await c.get("/api/v1/devices", params={"online": "true"},
                              headers=auth(MANAGER))).json()
        assert {(d["store_id"], d["device_id"]) for d in online} == {("s1", "d0"), ("s1", "d1")}
        s2 = (await c.get("/api/v1/devices", params={"store_id": "s2"},
                          headers=auth(MANAGER))).json()
        assert [d["device_id"] for d in s2] == ["d0"]
        assert (await c.get("/api/v1/stores/s3/devices", headers=auth(MANAGER))).status_code == 404


async def test_event_pagination_is_complete_and_stable(db_url: str) -> None:
    clock = ManualClock()
    batches = []
    for b in range(5):  # 5 batches x 23 events; several share a received_ms
        batches.append([(topics.evt("s1" if i % 3 else "s2", "sale"), encode(Event(
            id=f"e-{b}-{i:02d}", kind="sale", store_id="s1" if i % 3 else "s2",
            seq=b * 100 + i, ts=1))) for i in range(23)])
    for batch in batches:
        ingest(db_url, batch, clock)
        clock.advance(0.001)
    async with api_client(create_app(make_settings(db_url), publisher=MemoryPublisher())) as c:
        seen: list[tuple[str, str]] = []
        after = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"limit": 10}
            if after:
                params["after"] = after
            page = (await c.get("/api/v1/events", params=params, headers=auth(MANAGER))).json()
            pages += 1
            seen += [(e["store_id"], e["id"]) for e in page["items"]]
            after = page["next"]
            if after is None:
                break
        assert pages == 12 and len(seen) == 115 == len(set(seen))
        # Received order (a batch per received_ms; ids carry the batch), then store, id.
        assert seen == sorted(seen, key=lambda k: (k[1].split("-")[1], k))
        s2 = (await c.get("/api/v1/events", params={"store_id": "s2", "limit": 1000},
                          headers=auth(MANAGER))).json()
        assert len(s2["items"]) == 5 * 8 and s2["next"] is None
        none = (await c.get("/api/v1/events", params={"kind": "refund"},
                            headers=auth(MANAGER))).json()
        assert none == {"items": [], "next": None}


async def test_desired_version_is_monotonic_and_published_retained(db_url: str) -> None:
    pub = MemoryPublisher()
    path = "/api/v1/stores/s1/shadow/agent/desired"
    async with api_client(create_app(make_settings(db_url), publisher=pub)) as c:
        results = await asyncio.gather(*[
            c.put(path, headers=auth(ADMIN), json={"state": {"n": i}}) for i in range(8)])
        assert sorted(r.json()["desired_version"] for r in results) == list(range(1, 9))
        topic = topics.shadow_desired("s1", "agent")
        sent = [json.loads(m.payload) for m in pub.on(topic)]
        assert [m["version"] for m in sent] == list(range(1, 9))  # published in order
        assert all(m.qos == 1 and m.retain for m in pub.on(topic))
        assert json.loads(pub.retained[topic].payload)["version"] == 8
        shadow = (await c.get("/api/v1/stores/s1/shadow/agent", headers=auth(MANAGER))).json()
        assert shadow["desired_version"] == 8 and shadow["in_sync"] is False
        # The broker is down: the version is still stored and bumped, the caller told.
        pub.fail = True
        r = await c.put(path, headers=auth(ADMIN), json={"state": {"n": 99}})
        assert r.status_code == 503 and "version 9" in r.json()["detail"]
        pub.fail = False
        r = await c.put(path, headers=auth(ADMIN), json={"state": {"n": 100}})
        assert r.json()["desired_version"] == 10
        assert json.loads(pub.retained[topic].payload)["state"] == {"n": 100}
        assert (await c.get("/api/v1/stores/s1/shadow/cart-9",
                            headers=auth(MANAGER))).status_code == 404


async def test_commands_expire_and_publish_failure_is_reported(db_url: str) -> None:
    clock = ManualClock()
    ingest(db_url, [birth("s1", 0, 0)], clock)
    pub = MemoryPublisher()
    app = create_app(make_settings(db_url), publisher=pub, clock=clock)
    async with api_client(app) as c:
        r = await c.post("/api/v1/stores/s1/commands", headers=auth(TECH),
                         json={"name": "get_diagnostics", "args": {"verbose": True}, "ttl_s": 5})
        assert r.status_code == 202
        cmd = r.json()
        assert r.headers["location"] == f"/api/v1/commands/{cmd['cmd_id']}"
        assert cmd["status"] == "pending" and cmd["expires_at"] == clock.now_ms() + 5000
        (sent,) = pub.on(topics.cmd("s1", "agent"))
        body = json.loads(sent.payload)
        assert (body["cmd_id"], body["name"], body["args"], sent.qos, sent.retain) == (
            cmd["cmd_id"], "get_diagnostics", {"verbose": True}, 1, False)
        clock.advance(6)
        r = await c.get(f"/api/v1/commands/{cmd['cmd_id']}", headers=auth(MANAGER))
        assert r.json()["status"] == "expired"
        pub.fail = True
        r = await c.post("/api/v1/stores/s1/commands", headers=auth(ADMIN), json={"name": "ping"})
        assert r.status_code == 503
        assert (await c.post("/api/v1/stores/nope/commands", headers=auth(ADMIN),
                             json={"name": "ping"})).status_code == 404


@pytest.mark.mosquitto
async def test_command_round_trip_over_real_broker(mosquitto: Mosquitto, db_url: str) -> None:
    """API publishes the command, a 'store' answers on cmd-res, ingest stores the result."""
    settings = make_settings(db_url, mosquitto.url)
    ingest(db_url, [birth("s1", 0, 0)], ManualClock())
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry, ingest=True)  # real MqttPublisher + ingest
    async with api_client(app) as c, aiomqtt.Client(mosquitto.host, mosquitto.port) as store:
        await asyncio.wait_for(app.state.ingest.connected.wait(), 15)
        await store.subscribe(topics.cmd("s1", "agent"), qos=1)
        r = await c.post("/api/v1/stores/s1/commands", headers=auth(TECH), json={"name": "ping"})
        cmd_id = r.json()["cmd_id"]
        msg = await asyncio.wait_for(anext(store.messages), 10)
        assert json.loads(msg.payload)["cmd_id"] == cmd_id  # type: ignore[arg-type]
        result = CommandResult(cmd_id=cmd_id, status="ok", result={"pong": True}, ts=5)
        await store.publish(topics.cmd_res("s1"), encode(result), qos=1)

        async def done() -> dict:  # type: ignore[type-arg]
            r = await c.get(f"/api/v1/commands/{cmd_id}", headers=auth(MANAGER))
            return r.json()  # type: ignore[no-any-return]

        for _ in range(200):
            body = await done()
            if body["status"] != "pending":
                break
            await asyncio.sleep(0.05)
        assert body["status"] == "ok" and body["result"] == {"pong": True}
        assert body["completed_ms"] == 5
        # Desired state reaches the broker retained: a late subscriber still gets it.
        r = await c.put("/api/v1/stores/s1/shadow/agent/desired", headers=auth(ADMIN),
                        json={"state": {"volume": 3}})
        assert r.status_code == 200
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as late:
        await late.subscribe(topics.shadow_desired("s1", "agent"), qos=1)
        msg = await asyncio.wait_for(anext(late.messages), 10)
        assert msg.retain and json.loads(msg.payload)["state"] == {"volume": 3}  # type: ignore[arg-type]


@pytest.mark.mosquitto
async def test_mqtt_publisher_reconnects_after_broker_restart(mosquitto: Mosquitto) -> None:
    settings = make_settings("sqlite://", mosquitto.url)
    pub = MqttPublisher(settings)
    try:
        await pub.publish("sf/v1/s1/cmd/agent", b"1", qos=1, retain=False)
        mosquitto.restart()
        await pub.publish("sf/v1/s1/shadow/agent/desired", b"2", qos=1, retain=True)
    finally:
        await pub.aclose()
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as late:
        await late.subscribe("sf/v1/s1/shadow/agent/desired", qos=1)
        msg = await asyncio.wait_for(anext(late.messages), 10)
        assert msg.payload == b"2"


async def test_publisher_moves_past_a_dead_cluster_host(mosquitto: Mosquitto,
                                                        db_url: str) -> None:
    """The API's publisher holds a cluster's host list (decision 0062): whichever host it
    tries first, a dead one costs one try and the message reaches the live broker."""
    dead = free_port()  # nothing listens there
    url = f"mqtt://127.0.0.1:{dead},{mosquitto.host}:{mosquitto.port}"
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as watcher:
        await watcher.subscribe("hosts/#", qos=1)
        for i in range(4):  # client ids seed the order: some start on the dead host
            publisher = MqttPublisher(make_settings(db_url, url), client_id=f"api-{i}")
            try:
                await publisher.publish(f"hosts/{i}", b"x", qos=1, retain=False)
            finally:
                await publisher.aclose()
            msg = await asyncio.wait_for(anext(watcher.messages), 10)
            assert str(msg.topic) == f"hosts/{i}"
