"""A full outbox never drops a business event (decision 0025), on a real SQLite file.

A small bound (64 KiB) and a manual clock stand for the 256 MiB of a store box and a
long outage: device chatter goes first, the headroom alarm fires, then low-value
events are refused (counted), and sales and vends past the bound are still kept.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from edge_agent.uplink.outbox_bounds import HEADROOM_CAP_S
from protocols import encode, topics
from protocols.clock import ManualClock
from protocols.messages import CloudReady, Event
from tests.edge_agent.helpers import (
    device,
    device_event,
    make_config,
    metric,
    publish_events,
    running_agent,
    wait_until,
    watch,
)
from tests.edge_agent.test_outbox import Opened, row
from tests.services import Mosquitto

MAX_BYTES = 64 * 1024
ROW = 200  # bytes per row: about a busy store's average (decision 0025's arithmetic)
HOUR_S = 3600.0


def alarm_gauge(box: Opened, alarm: str) -> float:
    return box.sample("storefleet_outbox_alarm", alarm=alarm)


async def alarm_events(box: Opened) -> list[dict[str, object]]:
    rows = await box.outbox.peek(100_000)
    return [json.loads(r.payload)["data"] for r in rows if r.topic.endswith("/evt/device_alarm")]


async def test_full_outbox_keeps_sales_drops_chatter_first_alarms_then_refuses(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with Opened(tmp_path / "o.db", clock, store_id="S001", max_bytes=MAX_BYTES,
                      max_age_s=30 * 86_400, headroom_alarm_s=HOUR_S) as box:
        chatter: list[str] = []  # low-value ids, in the order they were accepted
        business: list[str] = []

        # An outage with device chatter alone: past the bound the oldest chatter goes.
        for i in range(400):  # 80,000 bytes
            [seq] = await box.outbox.put_many([row(f"d{i}", ROW, kind="device_event")])
            assert seq is not None
            chatter.append(f"d{i}")
        assert box.outbox.bytes() <= MAX_BYTES
        assert box.sample("storefleet_outbox_dropped_total", reason="max_bytes") > 0
        assert box.sample("storefleet_outbox_headroom_seconds") == HEADROOM_CAP_S
        assert box.outbox.alarms() == []

        # Then a sale and a vend a minute (6.7 B/s of business) among the chatter.
        first_alarm = first_refusal = None
        refused = 0
        for minute in range(1, 181):
            clock.advance(60)
            ids = [f"s{minute}", f"v{minute}", f"a{minute}", f"b{minute}"]
            seqs = await box.outbox.put_many([
                row(ids[0], ROW, kind="sale"), row(ids[1], ROW, kind="vend"),
                row(ids[2], ROW, kind="device_event"), row(ids[3], ROW, kind="cart_session"),
            ])
            assert seqs[0] is not None and seqs[1] is not None, f"minute {minute}: sale refused"
            business += ids[:2]
            for event_id, seq in zip(ids[2:], seqs[2:], strict=True):
                if seq is None:
                    refused += 1
                else:
                    chatter.append(event_id)
            headroom = box.sample("storefleet_outbox_headroom_seconds")
            if first_alarm is None and alarm_gauge(box, "outbox_headroom_low") == 1:
                first_alarm = minute
                assert headroom < HOUR_S and refused == 0
                [event] = await alarm_events(box)
                assert event["alarm"] == "outbox_headroom_low" and event["active"] is True
            if first_refusal is None and refused:
                first_refusal = minute

            held = {r.id for r in await box.outbox.peek(100_000)}
            assert set(business) <= held, f"minute {minute}: a business event was dropped"
            kept = [c for c in chatter if c in held]  # low-value rows go oldest first
            assert kept == chatter[len(chatter) - len(kept):], f"minute {minute}"

        assert first_alarm is not None and first_refusal is not None
        assert first_alarm < first_refusal  # about an hour of warning at this rate
        assert first_refusal - first_alarm >= 50
        assert refused > 0
        by_kind = {k: box.sample("storefleet_outbox_refused_total", kind=k, reason="full")
                   for k in ("device_event", "cart_session")}
        assert sum(by_kind.values()) == refused and all(by_kind.values())

        # Business alone past the bound: kept, and alarmed.
        # (and the outbox's own alarm events, kept like business: they must get out)
        assert box.outbox.business_bytes() >= len(business) * ROW > MAX_BYTES
        assert box.outbox.alarms() == ["outbox_headroom_low", "outbox_over_bound"]
        assert alarm_gauge(box, "outbox_over_bound") == 1
        assert box.sample("storefleet_outbox_headroom_seconds") == 0
        assert {"outbox_over_bound"} <= {e["alarm"] for e in await alarm_events(box)}

        # The uplink drains: the alarms clear and chatter is taken again.
        held_seqs = [r.seq for r in await box.outbox.peek(100_000)]
        await box.outbox.delete(held_seqs)
        assert await box.outbox.put_many([row("after", ROW, kind="device_event")]) != [None]
        assert box.outbox.alarms() == []
        assert alarm_gauge(box, "outbox_headroom_low") == 0
        cleared = await alarm_events(box)
        assert {(e["alarm"], e["active"]) for e in cleared} == {
            ("outbox_headroom_low", False), ("outbox_over_bound", False)}


async def test_refusal_raises_the_alarm_even_when_no_sale_arrives(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Opened(tmp_path / "o.db", clock, max_bytes=1000) as box:
        await box.outbox.put_many([row(f"s{i}", 99, kind="sale") for i in range(10)])
        clock.advance(3600)  # no business write in the rate's window: headroom is "plenty"
        await box.outbox.enforce_bounds()
        assert box.outbox.alarms() == []  # 10 bytes of room and no rate
        assert box.sample("storefleet_outbox_headroom_seconds") == HEADROOM_CAP_S
        assert await box.outbox.put_many([row("d", 20, kind="label_ack")]) == [None]
        assert box.outbox.alarms() == ["outbox_headroom_low"]
        assert box.sample("storefleet_outbox_refused_total", kind="label_ack", reason="full") == 1


async def test_age_bound_drops_only_low_value_rows(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Opened(tmp_path / "o.db", clock, max_age_s=60) as box:
        await box.outbox.put_many([row("sale", kind="sale"), row("chat", kind="device_event"),
                                   row("refund", kind="refund"), row("order", kind="order_status"),
                                   row("coupon", kind="coupon_redeemed")])
        clock.advance(120)
        assert await box.outbox.enforce_bounds() == {"max_age": 1, "max_bytes": 0}
        assert [r.id for r in await box.outbox.peek(10)] == ["sale", "refund", "order", "coupon"]
        assert box.outbox.oldest_age_ms() == 120_000  # visible, never dropped


async def test_an_outbox_written_before_the_rule_keeps_its_sales(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with sqlite3.connect(path) as conn:  # the schema before decision 0025: no low_value
        conn.execute(
            "CREATE TABLE rows (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL, created_ms INTEGER NOT NULL,"
            " size INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0)"
        )
        conn.executemany(
            "INSERT INTO rows(id, topic, payload, created_ms, size) VALUES (?, ?, ?, 0, 40)",
            [("old-sale", "sf/v1/S1/evt/sale", b"x" * 40),
             ("old-chat", "sf/v1/S1/evt/device_event", b"x" * 40),
             ("old-vend", "sf/v1/S1/evt/vend", b"x" * 40)],
        )
    conn.close()
    clock = ManualClock(start_ms=1000)
    async with Opened(path, clock, max_bytes=100) as box:  # 120 bytes held: 20 over
        assert [r.id for r in await box.outbox.peek(10)] == ["old-sale", "old-vend"]
        assert box.sample("storefleet_outbox_dropped_total", reason="max_bytes") == 1
        assert box.outbox.business_bytes() == 80


@pytest.mark.mosquitto
async def test_agent_keeps_every_sale_and_sends_its_alarms_when_the_cloud_answers(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    # Nobody answers the birth at first, so the outbox fills (decision 0012).
    config = make_config(tmp_path, uplink=uplink_broker, local=local_broker,
                         await_cloud_ready=True, outbox_max_bytes=8192, health_interval_s=0.2)
    store = config.store_id
    sales = [device_event("sale", total=100 + i) for i in range(60)]  # about 11 kB
    chatter = [device_event("device_event", note="door") for _ in range(5)]
    async with running_agent(config) as agent, watch(uplink_broker, store) as seen:
        async with device(local_broker, "pos", "till-1") as till:
            await publish_events(till, "pos", "till-1", sales)
            await wait_until(lambda: agent.outbox.business_bytes() > 8192, what="sales held")
            await publish_events(till, "pos", "till-1", chatter)
            await wait_until(lambda: metric(agent, "storefleet_outbox_refused_total",
                                            kind="device_event", reason="full") == 5,
                             what="chatter refused")
        assert agent.outbox.alarms() == ["outbox_headroom_low", "outbox_over_bound"]
        diagnostics = agent.diagnostics()
        assert diagnostics["outbox_alarms"] == agent.outbox.alarms()
        assert diagnostics["outbox_headroom_s"] == 0
        assert metric(agent, "storefleet_outbox_alarm", alarm="outbox_over_bound") == 1
        assert agent.alarms()["outbox"] == agent.outbox.alarms()  # the shadow's alarms

        def reported_alarms() -> object:
            reported = seen.on(topics.shadow_reported(store))
            return reported and json.loads(reported[-1])["state"].get("alarms", {}).get("outbox")

        await wait_until(lambda: reported_alarms() == agent.outbox.alarms(),
                         what="outbox alarms in the reported shadow")

        ready = CloudReady(bd_seq=agent.uplink.bd_seq, ts=1)
        async with device(uplink_broker, "cloud", "ingest") as cloud:
            await cloud.publish(topics.ready(store), encode(ready), qos=1)
        await wait_until(lambda: len(seen.on(topics.evt(store, "sale"))) >= len(sales),
                         what="every sale sent")
        await wait_until(lambda: len(seen.on(topics.evt(store, "device_alarm"))) >= 2,
                         what="the outbox alarms sent")
        await asyncio.sleep(0.2)
    sent = {Event.model_validate_json(p).id for p in seen.on(topics.evt(store, "sale"))}
    assert sent == {e.id for e in sales}
    alarms = [Event.model_validate_json(p) for p in seen.on(topics.evt(store, "device_alarm"))]
    assert {(a.device_id, a.data["alarm"], a.data["active"]) for a in alarms} >= {
        ("agent", "outbox_headroom_low", True), ("agent", "outbox_over_bound", True)}
