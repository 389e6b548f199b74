"""Smart carts: the real cart simulator on a real Mosquitto, driven by a real agent."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.app import Agent
from edge_agent.drivers.cart import CartDriver, ScreenTimeout
from firmware_sim.cart import CartSimulator
from firmware_sim.layouts import DEFAULT_LAYOUT, Layout
from protocols import decode, encode, topics
from protocols.cart import BeaconReading, CartScan, CartSessionMsg
from protocols.codec import decode_state
from protocols.messages import Birth, Event
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until, watch
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

LAYOUT = Layout.load(DEFAULT_LAYOUT)
BEACON_KEYS = {b.key for b in LAYOUT.beacons}


def fast_cart(cart_id: str, bus: Mosquitto, **kw: object) -> CartSimulator:
    """A shopper who runs (short sessions) so a test sees whole sessions in seconds."""
    options: dict[str, object] = {"speed_mps": 25.0, "items_per_session": (1, 2),
                                  "dwell_s": 0.2, "member_share": 1.0, "tele_interval_s": 0.5}
    options.update(kw)
    return CartSimulator(cart_id=cart_id, bus_url=bus.url, layout=LAYOUT,
                         **options)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(*sims: CartSimulator) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop), name=f"test-{s.cart_id}") for s in sims]
    try:
        await wait_until(lambda: all(s.connected.is_set() for s in sims) or
                         any(t.done() for t in tasks), what="carts connected")
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def cart_driver(agent: Agent) -> CartDriver:
    driver = agent.driver("carts")
    assert isinstance(driver, CartDriver)
    return driver


async def test_sessions_scans_and_screen_messages(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker,
                      devices=[{"id": "carts", "family": "cart", "model": "cart-fleet"}])
    store = cfg.store_id
    sim = fast_cart("cart-01", local_broker, scan_hz=5.0)
    async with watch(uplink_broker, store) as seen, running_agent(cfg) as agent:
        driver = cart_driver(agent)
        sub = driver.subscribe_scans()
        slow = driver.subscribe_scans(maxsize=2)  # never read: its oldest go, counted
        async with running(sim):
            # scan reports at ~5 Hz, fanned out to subscribers, naming real beacon keys
            first = await asyncio.wait_for(sub.__anext__(), 5)
            t0, n = time.monotonic(), 0
            while time.monotonic() - t0 < 2.0:
                report = await asyncio.wait_for(sub.__anext__(), 5)
                n += 1
            assert 7 <= n <= 13, n  # 5 Hz over 2 s, with scheduling slack
            assert first.cart_id == "cart-01"
            assert report.scan.readings and {r.beacon for r in report.scan.readings} <= BEACON_KEYS
            assert report.session_id is not None and report.member_id is not None

            # a screen message round trip: published on down/screen, acknowledged by the cart
            result = await driver.send_screen("cart-01", title="2 for 1", body="on bread")
            assert result.status == "shown" and result.latency_ms < 2000
            assert [m.msg_id for m in sim.screens] == [result.msg_id]
            assert sim.screens[0].title == "2 for 1"

            # a cart mid-session holds back an agent restart (decision 0043)
            await wait_until(lambda: driver.busy_reason() == "1 cart(s) in use (cart-01)",
                             what="cart in use")
            # whole sessions: start (member from the QR code) and end with the basket
            await wait_until(lambda: len(sim.sessions) >= 2, within_s=20, what="a whole session")
        sub.close()
        slow.close()
        assert slow.queue.qsize() == 2 and slow.dropped >= 8, slow.dropped
        assert metric(agent, "storefleet_cart_scans_dropped_total") == slow.dropped
        with pytest.raises(ScreenTimeout):  # the cart is gone: no ack
            await driver.send_screen("cart-01", title="anyone?", timeout_s=0.3)

        evt = topics.evt(store, "cart_session")
        await wait_until(lambda: len(seen.on(evt)) >= 3, what="cart_session events")
        events = [decode(p, Event) for p in seen.on(evt)]
        first_session = sim.sessions[0]
        start = next(e for e in events if e.id == f"{first_session}.start")
        end = next(e for e in events if e.id == f"{first_session}.end")
        assert start.device_id == "cart-01" and start.data["member_id"].startswith("M")
        assert end.data["action"] == "end" and end.data["reason"] == "checkout"
        assert 1 <= end.data["item_count"] <= 2
        assert all(len(code) == 13 for code in end.data["items"])
        assert metric(agent, "storefleet_cart_messages_total", type="item") >= 1

        # the cloud sees the tablet (its retained state) and the cart driver
        states = [decode_state(p) for p in seen.on(topics.state(store))]
        births = [b for b in states if isinstance(b, Birth)]
        kinds = {(d.device_id, d.kind) for b in births for d in b.devices}
        assert {("carts", "cart"), ("cart-01", "cart")} <= kinds
        assert seen.on(topics.tele(store, "cart", "cart-01"))  # battery telemetry forwarded


async def test_a_flooding_and_garbage_sending_cart_is_isolated(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker, devices=[
        {"id": "carts", "family": "cart", "options": {"max_carts": 8}}])
    good = fast_cart("cart-good", local_broker)
    async with running_agent(cfg) as agent, running(good):
        driver = cart_driver(agent)
        scan = encode(CartScan(ts=1, readings=[BeaconReading(beacon="ibeacon:x:1:1", rssi=-60)]))
        async with aiomqtt.Client(local_broker.host, local_broker.port,
                                  max_queued_outgoing_messages=0) as bad:
            up = lambda t: topics.local("cart", "cart-bad", "up", t)  # noqa: E731
            for _ in range(3000):  # ~600x a real tablet's rate, as fast as the socket takes it
                await bad.publish(up("scan"), scan, qos=0)
            garbage = [
                (up("scan"), b"\xff\xfe not json"),
                (up("session"), b'{"v": 1, "session_id": 5, "action": "start", "ts": 1}'),
                (up("item"), b'{"v": 1, "ts": 1, "session_id": "x", "barcode": "12ab"}'),
                (up("ack"), b'{"v": 1, "msg_id": "never-sent", "ts": 1}'),
                (up("selfie"), b"{}"),
                (up("session"), b"[" * 300_000),  # over the payload cap
            ]
            for topic, payload in garbage:
                await bad.publish(topic, payload, qos=1)
            # a swarm of made-up cart ids cannot grow the table past max_carts
            for i in range(20):
                await bad.publish(topics.local("cart", f"ghost-{i}", "up", "scan"), scan, qos=0)
            session = CartSessionMsg(session_id="s-bad-1", action="start",
                                     member_qr="not-a-member-card", ts=1)
            await bad.publish(up("session"), encode(session), qos=1)

        await wait_until(lambda: metric(agent, "storefleet_cart_rejected_total",
                                        reason="bad_member_qr") == 1, what="last message")
        assert metric(agent, "storefleet_cart_rejected_total", reason="unknown_type") == 1
        assert metric(agent, "storefleet_cart_rejected_total", reason="rate_limited") > 1000
        assert metric(agent, "storefleet_cart_rejected_total", reason="unknown_ack") == 1
        assert metric(agent, "storefleet_cart_rejected_total", reason="too_many_carts") >= 10
        assert metric(agent, "storefleet_cart_rejected_total", reason="bad_member_qr") == 1
        # bad types in a session and a bad barcode; a payload over the codec's cap
        assert metric(agent, "storefleet_cart_rejected_total", reason="invalid_field") == 2
        assert metric(agent, "storefleet_cart_rejected_total", reason="too_large") == 1
        # (the non-JSON scan was dropped by the flood guard before it was even parsed)
        assert len(driver.carts) <= 8
        assert metric(agent, "storefleet_local_handler_errors_total", device_kind="cart") == 0
        bad_cart = driver.carts["cart-bad"]
        assert bad_cart.session is not None and bad_cart.session.member_id is None

        # the well-behaved cart is unaffected: its scans flow and its screen works
        sub = driver.subscribe_scans()
        report = await asyncio.wait_for(anext(r async for r in sub if r.cart_id == "cart-good"), 5)
        assert report.scan.readings
        result = await driver.send_screen("cart-good", title="still here?")
        assert result.status == "shown"
        await wait_until(lambda: len(good.sessions) >= 2, within_s=20, what="good cart sessions")
        assert agent.local.connected
