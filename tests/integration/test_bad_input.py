"""Bad input at every door — uplink MQTT, store-local bus, REST API — is rejected with a
clear reason, counted in a metric, damages nothing stored, and stops nothing."""

from __future__ import annotations

import asyncio
import json

import httpx
import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from firmware_sim.store import StoreSimulator
from protocols import topics
from tests.integration.conftest import STORE, Stack, wait_for
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


def _publish_raw(broker: Mosquitto, items: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rogue")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, payload in items:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def _samples(url: str, name: str) -> dict[str, float]:
    """``{reason label: value}`` of one counter family scraped over HTTP."""
    text = httpx.get(url, timeout=5).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[sample.labels.get("reason", "")] = sample.value
    return out


def _events_snapshot(stack: Stack) -> list[tuple[str, str]]:
    with stack.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, data FROM events ORDER BY id"))
        return [
            (r[0], json.dumps(r[1], sort_keys=True) if not isinstance(r[1], str) else r[1])
            for r in rows
        ]


def _event(**over: object) -> bytes:
    doc: dict[str, object] = {
        "v": 1,
        "id": "01ab-bad",
        "kind": "sale",
        "store_id": STORE,
        "seq": 1,
        "ts": 1,
    }
    doc.update(over)
    return json.dumps(doc).encode()


async def test_bad_input_is_rejected_counted_and_harmless(stack: Stack) -> None:
    api = stack.api(ingest=True).start()
    agent = stack.agent().start()
    base = f"http://127.0.0.1:{stack.api_port}"
    await wait_for(
        lambda: bool((stack.store_row() or {}).get("online")), timeout=40, what="store online"
    )

    # Some good traffic first, so there is stored data that must stay intact.
    sim = StoreSimulator(
        bus_url=stack.local_broker.url,
        store_id=STORE,
        devices=2,
        rate=0,
        max_events=100,
        tele_interval_s=0.5,
    )
    await asyncio.wait_for(sim.run(asyncio.Event()), timeout=60)
    await wait_for(lambda: len(stack.stored_ids()) == 100, timeout=30, what="100 events stored")
    before = await asyncio.to_thread(_events_snapshot, stack)

    # --- uplink: a client writing garbage straight to the cloud broker -------------------
    evt = topics.evt(STORE, "sale")
    await asyncio.to_thread(
        _publish_raw,
        stack.cloud_broker,
        [
            (evt, b"\x00\xffnot json"),
            (evt, _event(seq="one")),
            (evt, _event(data={"blob": "x" * 300_000})),
            (topics.evt(STORE, "teleport"), _event(kind="teleport")),
            (f"sf/v1/{STORE}/tele/cart/not valid!", b"{}"),  # matches tele/+/+, bad device id
            (topics.evt("S999", "sale"), _event()),  # payload store S001 on store S999's topic
            (topics.state(STORE), b'{"online": "maybe"}'),
        ],
    )
    # --- local bus: a device speaking nonsense to the agent ------------------------------
    dev = topics.local("sensor", "bad-dev", "up", "evt")
    await asyncio.to_thread(
        _publish_raw,
        stack.local_broker,
        [
            (dev, b"{{{"),
            (dev, json.dumps({"v": 1, "id": "x1", "kind": "sale", "ts": "noon"}).encode()),
            (dev, json.dumps({"v": 1, "id": "x2", "kind": "warp", "ts": 1}).encode()),
            (dev, b"[" + b"1," * 200_000 + b"1]"),
        ],
    )

    ingest_rejected = f"{base}/metrics"
    await wait_for(
        lambda: sum(_samples(ingest_rejected, "storefleet_ingest_rejected_total").values()) >= 7,
        timeout=20,
        what="7 uplink rejections counted",
    )
    rejected = _samples(ingest_rejected, "storefleet_ingest_rejected_total")
    for reason in ("not_json", "invalid_field", "too_large", "unknown_kind", "bad_topic"):
        assert rejected.get(reason, 0) >= 1, (reason, rejected)

    agent_metrics = f"http://127.0.0.1:{stack.agent_metrics_port}/metrics"
    await wait_for(
        lambda: sum(_samples(agent_metrics, "storefleet_agent_bad_payloads_total").values()) >= 4,
        timeout=20,
        what="4 local rejections counted",
    )
    local = _samples(agent_metrics, "storefleet_agent_bad_payloads_total")
    for reason in ("not_json", "invalid_field", "unknown_kind"):
        assert local.get(reason, 0) >= 1, (reason, local)

    # --- REST API: malformed requests -------------------------------------------------------
    auth = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        cases = [
            (await http.get("/api/v1/stores"), 401),
            (
                await http.get(
                    "/api/v1/stores", headers={"Authorization": "Bearer wrong-token-xyz"}
                ),
                401,
            ),
            (await http.get("/api/v1/events", params={"limit": -5}, headers=auth), 422),
            (
                await http.post(
                    f"/api/v1/stores/{STORE}/commands",
                    content=b"{not json",
                    headers={**auth, "Content-Type": "application/json"},
                ),
                422,
            ),
            (
                await http.post(f"/api/v1/stores/{STORE}/commands", json={"name": 5}, headers=auth),
                422,
            ),
            (
                await http.put(
                    f"/api/v1/stores/{STORE}/shadow/agent/desired", json={"state": []}, headers=auth
                ),
                422,
            ),
            (await http.get("/api/v1/stores/NOPE", headers=auth), 404),
        ]
        for resp, status in cases:
            assert resp.status_code == status, (resp.request.url, resp.text)
            assert resp.headers["content-type"].startswith("application/problem+json")
            body = resp.json()
            assert body["status"] == status and body["title"] and "detail" in body
        api_rejected = _samples(f"{base}/metrics", "storefleet_api_rejected_total")
        assert sum(api_rejected.values()) >= len(cases)

        # --- nothing stored was damaged, and everything still works ---------------------------
        assert await asyncio.to_thread(_events_snapshot, stack) == before
        sim2 = StoreSimulator(
            bus_url=stack.local_broker.url,
            store_id=STORE,
            devices=2,
            rate=0,
            max_events=50,
            seed=99,
        )
        await asyncio.wait_for(sim2.run(asyncio.Event()), timeout=60)
        await wait_for(
            lambda: len(stack.stored_ids()) == 150, timeout=30, what="new good events still stored"
        )
        assert (await http.get("/healthz")).status_code == 200
    assert api.alive and agent.alive
