"""The ESL driver against the simulated access point over a real Mosquitto:
a day of check-ins in seconds, and an AP that disconnects, restarts or floods."""

from __future__ import annotations

import asyncio
import time

import aiomqtt
import pytest

from edge_agent.drivers.base import DeviceConfig
from edge_agent.drivers.esl import STALE_ALARM, EslDriver
from firmware_sim.esl import EslApSim, start_esl_ap_sim
from protocols.clock import ManualClock
from tests.edge_agent.drivers.esl.mqtt_context import MqttContext
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

LABELS = [f"L{i:03d}" for i in range(100)]
JOB_TOPIC = "store/esl_ap/AP1/down/job"


def prices(version: int, changed: int, base: dict[str, dict[str, object]] | None = None,
           ) -> dict[str, dict[str, object]]:
    """Items SKU000..SKU099; version ``version`` reprices the first ``changed`` of ``base``."""
    items: dict[str, dict[str, object]] = {
        f"SKU{i:03d}": {"price_minor": 100 + i} for i in range(len(LABELS))
    }
    items.update(base or {})
    for i in range(changed):
        items[f"SKU{i:03d}"] = {"price_minor": 100 + i + version * 1000}
    return items


def jobs_sent(ctx: MqttContext) -> int:
    return sum(1 for t, *_ in ctx.published if t == JOB_TOPIC)


async def step(clock: ManualClock, sim: EslApSim, ctx: MqttContext, drv: EslDriver,
               seconds: float, *, base: tuple[int, int, int] = (0, 0, 0)) -> None:
    """Move simulated time; let the AP's check-ins reach the driver and its jobs reach
    the AP. ``base``: (acks, statuses, jobs) seen before this simulator joined the bus."""
    clock.advance(seconds)
    await sim.step()
    await ctx.wait_delivered("esl_ap/ack", base[0] + sim.stats["acks"])
    await ctx.wait_delivered("esl_ap/status", base[1] + sim.stats["status"])
    await drv.tick()
    sent = jobs_sent(ctx) - base[2]

    async def received() -> None:
        while sim.stats["jobs"] + sim.stats["unknown_label"] < sent:  # noqa: ASYNC110 - polls counters
            await asyncio.sleep(0.002)

    await asyncio.wait_for(received(), 5)


def make_driver(ctx: MqttContext, **options: object) -> EslDriver:
    opts = {"labels": {label: f"SKU{i:03d}" for i, label in enumerate(LABELS)},
            "retry_s": 120, "stale_after_s": 600, **options}
    drv = EslDriver(DeviceConfig(device_id="AP1", family="esl", options=opts), ctx)
    drv.subscribe()
    return drv


async def test_a_day_of_checkins_converges_with_deltas_only(mosquitto: Mosquitto) -> None:
    clock = ManualClock()
    async with MqttContext(clock=clock, host=mosquitto.host, port=mosquitto.port) as ctx:
        sim = await start_esl_ap_sim(mosquitto.url, ap_id="AP1", labels=LABELS, clock=clock,
                                     miss_prob=0.1, seed=3, autostep=False)
        try:
            drv = make_driver(ctx)
            started = time.monotonic()
            changes = {0: (1, 100), 8 * 3600: (2, 10), 12 * 3600: (3, 30), 18 * 3600: (4, 5)}
            t = 0
            want: dict[str, dict[str, object]] = {}
            while t < 24 * 3600:
                if t in changes:
                    version, changed = changes[t]
                    want = prices(version, changed, want)
                    drv.set_price_book(version, want)
                await step(clock, sim, ctx, drv, 40)
                t += 40
            elapsed = time.monotonic() - started
        finally:
            await sim.aclose()
    new_jobs = ctx.registry.get_sample_value(
        "storefleet_esl_jobs_sent_total", {"device_id": "AP1", "kind": "new"})
    assert new_jobs == 100 + 10 + 30 + 5  # only the delta of each version
    for i, label in enumerate(LABELS):
        shown = sim.labels[label]
        assert shown.shown_price_minor == want[f"SKU{i:03d}"]["price_minor"], label
        assert shown.shown_version == (4 if i < 5 else 3 if i < 30 else 2 if i < 10 else 1)
    health = drv.health()
    assert health.online and health.alarms == ()
    assert health.details["labels_acked"] == 100
    assert sum(s.missed for s in sim.labels.values()) > 0  # the seeded misses happened
    assert not ctx.events  # never stale: misses were absorbed by the next check-in
    assert elapsed < 60, f"a simulated day took {elapsed:.1f} s"  # ~3 s idle; CI is shared


async def test_disconnected_ap_goes_stale_then_recovers_after_restart(
    mosquitto: Mosquitto,
) -> None:
    clock = ManualClock()
    async with MqttContext(clock=clock, host=mosquitto.host, port=mosquitto.port) as ctx:
        sim = await start_esl_ap_sim(mosquitto.url, ap_id="AP1", labels=LABELS, clock=clock,
                                     miss_prob=0.0, autostep=False)
        drv = make_driver(ctx)
        v1 = prices(1, 100)
        drv.set_price_book(1, v1)
        for _ in range(3):
            await step(clock, sim, ctx, drv, 40)
        assert drv.health().details["labels_acked"] == 100
        await sim.aclose()  # the AP drops off the bus

        drv.set_price_book(2, prices(2, 20, v1))
        for _ in range(20):  # 20 min with the AP gone: no acks, no statuses
            clock.advance(60)
            await drv.tick()
        health = drv.health()
        assert not health.online
        assert health.alarms == (STALE_ALARM,)
        assert health.details["labels_stale"] == 20
        assert ctx.events[-1].data["active"] is True and ctx.events[-1].data["count"] == 20

        # the AP comes back with a new boot id and an empty queue; the driver resends
        sim = await start_esl_ap_sim(mosquitto.url, ap_id="AP1", labels=LABELS, clock=clock,
                                     miss_prob=0.0, autostep=False, seed=8)
        base = (ctx.delivered["esl_ap/ack"], ctx.delivered["esl_ap/status"], jobs_sent(ctx))
        try:
            for _ in range(4):
                await step(clock, sim, ctx, drv, 40, base=base)
        finally:
            await sim.aclose()
        assert drv.health().alarms == ()
        assert drv.health().details["labels_acked"] == 100
        assert ctx.events[-1].data["active"] is False
        assert sorted(sim.labels[label].shown_version for label in LABELS[:20]) == [2] * 20


async def test_flooding_and_garbage_on_both_sides_are_contained(mosquitto: Mosquitto) -> None:
    clock = ManualClock()
    async with MqttContext(clock=clock, host=mosquitto.host, port=mosquitto.port) as ctx:
        sim = await start_esl_ap_sim(mosquitto.url, ap_id="AP1", labels=LABELS[:10], clock=clock,
                                     miss_prob=0.0, autostep=False)
        try:
            drv = make_driver(ctx, labels={label: "SKU000" for label in LABELS[:10]})
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as rogue:
                for i in range(1000):  # garbage up to the driver, garbage down to the AP
                    await rogue.publish("store/esl_ap/AP1/up/ack", b"\x00garbage" * (i % 5))
                    await rogue.publish(JOB_TOPIC, b'{"label_id": "L000"}')
                await rogue.publish(JOB_TOPIC, b'{"v":1,"job_id":"j","label_id":"ghost",'
                                    b'"version":1,"content":{"sku":"X","currency":"EUR"},'
                                    b'"content_hash":"0123456789abcdef","ts":1}')
            await ctx.wait_delivered("esl_ap/ack", 1000)

            async def drained() -> None:
                while sim.stats["bad_job"] < 1000 or sim.stats["unknown_label"] < 1:  # noqa: ASYNC110 - polls counters
                    await asyncio.sleep(0.005)

            await asyncio.wait_for(drained(), 10)
            assert sim.pending == {}  # nothing garbage got queued for a label
            bad = ctx.registry.get_sample_value
            total = sum(bad("storefleet_esl_bad_messages_total", {"device_id": "AP1",
                                                                  "reason": r}) or 0
                        for r in ("not_json", "flood", "invalid_field"))
            assert total == 1000
            # and the pair still works afterwards
            clock.advance(10)  # refill the flood bucket
            drv.set_price_book(1, {"SKU000": {"price_minor": 42}})
            for _ in range(3):
                await step(clock, sim, ctx, drv, 40)
            assert drv.health().details["labels_acked"] == 10
            assert {s.shown_price_minor for s in sim.labels.values()} == {42}
        finally:
            await sim.aclose()
