"""Vision wired into the agent, over a real Mosquitto store-local bus: a simulated cart's
basket camera uploads JPEG snapshots drawn by the synthetic product generator; the
agent classifies them with the ONNX model and a rule with that category as its vision
cue issues a coupon to that cart; a product put in unscanned raises an alarm; a
garbage snapshot is refused with a metric and nothing stops."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from edge_agent.app import Agent
from edge_agent.cartscreen import SAMPLE_DATA
from edge_agent.cartscreen.runtime import InAisle
from edge_agent.modules.in_aisle import InAisleModule
from edge_agent.modules.vision import Vision
from firmware_sim.cart import CartSimulator
from firmware_sim.layouts import DEFAULT_LAYOUT, Layout
from protocols import topics
from protocols.triggers import CouponIssuedData
from protocols.vision import PRODUCT_CATEGORIES, SNAPSHOT
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until, watch
from tests.services import Mosquitto


def aisle(agent: Agent) -> InAisle:
    """The agent's in-aisle runtime (its module ``in_aisle``)."""
    return agent.get(InAisleModule).in_aisle

pytestmark = pytest.mark.mosquitto


def seen_rules(layout: Layout) -> list[dict[str, object]]:
    """One rule per (vision category, zone): whatever zone the cart is in when its camera
    sees a product, the rule cued by that product's category can fire."""
    return [{"id": f"seen-{cat}-{zone.id}", "zone": zone.id, "vision_category": cat,
             "cooldown_ms": 0, "coupon": {"engine_code": "SNACK3", "title": f"saw {cat}"}}
            for cat in PRODUCT_CATEGORIES for zone in layout.zones]


async def test_a_cart_snapshot_of_a_category_fires_the_rule_cued_by_it(
        tmp_path, uplink_broker: Mosquitto, local_broker: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    layout = Layout.load(DEFAULT_LAYOUT)
    config = make_config(tmp_path, uplink=uplink_broker, local=local_broker,
                         devices=({"id": "carts", "family": "cart"},),
                         health_interval_s=0.5,
                         modules={"in_aisle": {"store_layout": DEFAULT_LAYOUT,
                                               "retail_data": SAMPLE_DATA,
                                               "trigger_rules": tuple(seen_rules(layout)),
                                               "unscanned_window_s": 1.0},
                                  "vision": {"threads": 64}})
    # Every pictured product goes in unscanned: each picture is also an alarm.
    sim = CartSimulator("C7", local_broker.url, layout, seed=11, member_share=0.0,
                        items_per_session=(4, 4), dwell_s=0.4, speed_mps=3.0,
                        snapshots=True, unscanned_share=1.0)
    stop = asyncio.Event()
    async with running_agent(config) as agent, watch(uplink_broker, config.store_id) as up:
        pipeline = agent.get(Vision).pipeline
        assert pipeline is not None and aisle(agent) is not None
        assert pipeline.classifier.model.threads <= 2  # clamped to physical cores
        # garbage first: refused, counted, and the pipeline carries on
        async with aiomqtt.Client(local_broker.host, local_broker.port) as bad:
            await bad.publish(topics.local("cart", "C9", "up", SNAPSHOT),
                              b"\xff\xd8 definitely not a jpeg", qos=1)
        await wait_until(lambda: metric(agent, "storefleet_vision_bad_frames_total",
                                        reason="truncated") == 1, what="bad frame counted")

        task = asyncio.create_task(sim.run(stop), name="test-cart-sim")
        issued_topic = f"sf/v1/{config.store_id}/evt/coupon_issued"
        alarm_topic = f"sf/v1/{config.store_id}/evt/device_alarm"

        def vision_coupons() -> list[CouponIssuedData]:
            out = [CouponIssuedData.model_validate(json.loads(p)["data"])
                   for p in up.on(issued_topic)]
            return [c for c in out if c.rule_id.startswith("seen-")]

        def alarms() -> list[dict[str, object]]:
            return [json.loads(p)["data"] for p in up.on(alarm_topic)]

        try:
            await wait_until(lambda: bool(vision_coupons()) and bool(alarms())
                             and any(s.kind == "alert" for s in sim.screens), within_s=60,
                             what="a coupon cued by a snapshot, an unscanned alarm, and the "
                                  "scan prompt on the cart's screen")
        finally:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
        coupon = vision_coupons()[0]
        category = coupon.rule_id.split("-")[1]
        assert coupon.cart_id == "C7" and category in sim.snapshots_sent
        assert sim.unscanned  # the shopper really did not scan them
        alarm = alarms()[0]
        assert alarm["alarm"] == "unscanned_item" and alarm["category"] in sim.snapshots_sent
        assert alarm["scanned"] == 0 and alarm["pictured"] == 1
        prompt = next(s for s in sim.screens if s.kind == "alert")  # over MQTT, acknowledged
        assert prompt.title == "Did you forget to scan something?"
        assert metric(agent, "storefleet_vision_unscanned_total",
                      category=str(alarm["category"])) >= 1
        assert metric(agent, "storefleet_vision_frames_total", kind="snapshot") >= 2
