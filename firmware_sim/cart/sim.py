"""A simulated smart-cart tablet on the store-local bus (``protocols.cart``).

Life of a cart: connect (retained ``up/state`` online, Last Will offline) -> start a
session at the entrance (anonymous, or a member who scans a member QR code) -> walk to
shelves and scan items -> walk to the checkout -> pay on the screen -> end the session
-> start again.
All along: BLE scan reports at ``scan_hz`` (about 5 Hz), battery telemetry, and an
``up/ack`` for every ``down/screen`` message shown.

With ``snapshots``, the basket camera uploads a JPEG (``protocols.vision.CartSnapshot``
on ``up/snapshot``) of each product that goes into the basket and has a look in the
layout (``Layout.looks``); ``unscanned_share`` of those products go in without being
scanned (what the store box's "seen but not scanned" check is for).

With ``screen_url`` (the agent's cart-screen server), the tablet pays at the end of each
trip the way the screen's web app does (``firmware_sim.cart.tablet``): a coupon from the
wallet for ``coupon_share`` of shoppers, the checkout, and, with ``pay`` where the store
has the screen confirm payment, "I have paid"; the agent records the ``sale``. A refusal
or a failed call is logged and counted (``checkout_failures``), and the cart shops on.
Without it the trip ends unpaid, as before.

Misbehaviour for isolation tests: ``flood_hz`` sends scan reports far faster than a
real tablet does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from dataclasses import dataclass, field

import aiomqtt

from firmware_sim.cart.tablet import ScreenCallError, ScreenTablet, Trip, end_trip
from firmware_sim.cart.walker import Walker
from firmware_sim.layouts import Layout
from firmware_sim.mqtturl import bus_address
from protocols import decode, encode, topics
from protocols.cart import (
    CART_KIND,
    BeaconReading,
    CartItem,
    CartScan,
    CartSessionMsg,
    ScreenAck,
    ScreenMessage,
)
from protocols.clock import Clock, SystemClock
from protocols.errors import ProtocolError
from protocols.ids import uuid7
from protocols.messages import DeviceState, Sample, Telemetry
from protocols.vision import SNAPSHOT, encode_snapshot

logger = logging.getLogger(__name__)

# How long a cart told to stop waits for a payment in progress to finish (a handful of
# HTTP requests to the store box; each has its own timeout below this).
PAYMENT_GRACE_S = 20.0


@dataclass
class CartSimulator:
    cart_id: str
    bus_url: str
    layout: Layout
    clock: Clock = field(default_factory=SystemClock)
    seed: int = 1
    scan_hz: float = 5.0
    speed_mps: float = 1.2
    member_share: float = 0.5  # shoppers who scan a member card at the start
    items_per_session: tuple[int, int] = (3, 8)
    dwell_s: float = 1.0  # time at a shelf before scanning the item
    tele_interval_s: float = 5.0
    flood_hz: float | None = None
    snapshots: bool = False  # the basket camera uploads a JPEG of each product put in
    unscanned_share: float = 0.0  # products put in the basket without scanning them
    site_radio: bool = False  # firmware_sim.rf's radio (what the site survey recorded)
    screen_url: str | None = None  # the cart screen's base URL; None: trips end unpaid
    pay: bool = True  # confirm payment on the screen where the store lets it
    coupon_share: float = 0.5  # shoppers who apply a coupon from their wallet at checkout
    model: str = "sim-cart-10in"
    fw: str = "2.3.1"
    # what happened, for tests and the demo summary
    sessions: list[str] = field(default_factory=list)
    items_scanned: int = 0
    scans_sent: int = 0
    snapshots_sent: list[str] = field(default_factory=list)  # the categories pictured
    unscanned: list[str] = field(default_factory=list)  # skus put in without a scan
    screens: list[ScreenMessage] = field(default_factory=list)
    trips: list[Trip] = field(default_factory=list)  # checked out on the screen
    checkouts: int = 0  # payment QRs shown
    paid: int = 0  # paid on the screen: e-receipt received, the agent recorded a sale
    coupons_applied: int = 0
    coupons_refused: int = 0  # a coupon the screen would not apply (in use elsewhere ...)
    checkout_failures: int = 0  # trips whose checkout or payment failed
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    # set while the shopper is paying: a cart told to stop then finishes paying first (the
    # screen may already have recorded the sale; a sale with no trip behind it is a lie)
    _not_paying: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    def __post_init__(self) -> None:
        self._not_paying.set()

    def _topic(self, type_: str, direction: topics.LocalDirection = "up") -> str:
        return topics.local(CART_KIND, self.cart_id, direction, type_)

    def _state(self, *, online: bool) -> bytes:
        return encode(DeviceState(online=online, model=self.model, fw=self.fw,
                                  ts=self.clock.now_ms()))

    async def run(self, stop: asyncio.Event) -> None:
        bus = bus_address(self.bus_url)
        rng = random.Random(self.seed)
        will = aiomqtt.Will(self._topic("state"), self._state(online=False), qos=1, retain=True)
        async with aiomqtt.Client(**bus.client_options(),
                                  identifier=f"sim-smartcart-{self.cart_id}",
                                  will=will, keepalive=10) as client:
            await client.subscribe(self._topic("screen", "down"), qos=1)
            await client.publish(self._topic("state"), self._state(online=True), qos=1,
                                 retain=True)
            self.connected.set()
            tasks = [
                asyncio.create_task(self._screen(client), name=f"cart-screen-{self.cart_id}"),
                asyncio.create_task(self._telemetry(client, rng), name=f"cart-tele-{self.cart_id}"),
                asyncio.create_task(self._shop(client, rng), name=f"cart-shop-{self.cart_id}"),
            ]
            try:
                stopper = asyncio.create_task(stop.wait(), name=f"cart-stop-{self.cart_id}")
                done, _ = await asyncio.wait([*tasks, stopper],
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stopper:
                        task.result()  # a crashed loop is a simulator bug: surface it
            finally:
                with contextlib.suppress(TimeoutError):  # a payment takes a few requests
                    await asyncio.wait_for(self._not_paying.wait(), PAYMENT_GRACE_S)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.publish(self._topic("state"), self._state(online=False),
                                         qos=1, retain=True)

    # ---- shopping --------------------------------------------------------------------

    async def _shop(self, client: aiomqtt.Client, rng: random.Random) -> None:
        walker = Walker(self.layout, rng, speed_mps=self.speed_mps,
                        radio_env_seed=self.layout.radio_env_seed if self.site_radio else None)
        period = 1.0 / (self.flood_hz or self.scan_hz)
        async with contextlib.AsyncExitStack() as stack:
            tablet = None if self.screen_url is None else await stack.enter_async_context(
                ScreenTablet(self.screen_url, self.cart_id))
            while True:
                session_id = uuid7(self.clock.now_ms())
                qr = rng.choice(self.layout.members) if (
                    self.layout.members and rng.random() < self.member_share) else None
                await self._session(client, session_id, "start", qr)
                scanned: Counter[str] = Counter()
                for _ in range(rng.randint(*self.items_per_session)):
                    shelf = walker.go_to_shelf()
                    await self._walk(client, walker, session_id, period)
                    await self._dwell(client, walker, session_id, period)
                    sku = rng.choice(shelf.skus)
                    if await self._pick(client, session_id, sku, rng):
                        scanned[sku] += 1
                walker.go_to(self.layout.entrance)  # checkout by the door
                await self._walk(client, walker, session_id, period)
                if tablet is not None:
                    self._not_paying.clear()
                    try:
                        await self._pay(tablet, Trip(session_id, dict(scanned)), rng)
                    finally:
                        self._not_paying.set()
                await self._session(client, session_id, "end", None)

    async def _pay(self, tablet: ScreenTablet, trip: Trip, rng: random.Random) -> None:
        """Check out on the screen; whatever goes wrong is logged and counted, and the
        shopper leaves (the session ends) as one would whose payment did not go through."""
        try:
            await end_trip(tablet, trip, rng=rng, coupon_share=self.coupon_share, pay=self.pay)
        except ScreenCallError as err:
            self.checkout_failures += 1
            logger.warning("cart %s session %s: checkout failed at %s: %s", self.cart_id,
                           trip.session_id, err.step, err)
        self.coupons_applied += trip.coupon is not None
        self.coupons_refused += trip.coupon_refused is not None
        if trip.checkout_id is not None:
            self.checkouts += 1
            self.trips.append(trip)
        self.paid += trip.receipt is not None

    async def _walk(self, client: aiomqtt.Client, walker: Walker, session_id: str,
                    period: float) -> None:
        while not walker.arrived:
            walker.step(period)
            await self._scan(client, walker, session_id)
            await asyncio.sleep(period)

    async def _dwell(self, client: aiomqtt.Client, walker: Walker, session_id: str,
                     period: float) -> None:
        for _ in range(max(1, round(self.dwell_s / period))):
            await self._scan(client, walker, session_id)
            await asyncio.sleep(period)

    async def _scan(self, client: aiomqtt.Client, walker: Walker, session_id: str) -> None:
        readings = [BeaconReading(beacon=k, rssi=r) for k, r in walker.readings()]
        msg = CartScan(ts=self.clock.now_ms(), session_id=session_id, readings=readings)
        await client.publish(self._topic("scan"), encode(msg), qos=0)
        self.scans_sent += 1

    async def _session(self, client: aiomqtt.Client, session_id: str, action: str,
                       qr: str | None) -> None:
        msg = CartSessionMsg(session_id=session_id, action=action,  # type: ignore[arg-type]
                             member_qr=qr, ts=self.clock.now_ms())
        await client.publish(self._topic("session"), encode(msg), qos=1)
        if action == "start":
            self.sessions.append(session_id)

    async def _pick(self, client: aiomqtt.Client, session_id: str, sku: str,
                    rng: random.Random) -> bool:
        """The shopper scans the product (mostly) and puts it in; the camera sees it.
        True when it was scanned."""
        look = self.layout.looks.get(sku) if self.snapshots else None
        scanned = look is None or rng.random() >= self.unscanned_share
        if scanned:
            await self._item(client, session_id, sku)
        else:
            self.unscanned.append(sku)
        if look is not None:
            await self._snapshot(client, session_id, look, rng)
        return scanned

    async def _snapshot(self, client: aiomqtt.Client, session_id: str, category: str,
                        rng: random.Random) -> None:
        from firmware_sim.cart.camera import basket_jpeg

        seed = random.Random(rng.getrandbits(63))
        # drawing the picture is ~20 ms of CPU: off the loop, like a camera's own thread
        jpeg = await asyncio.to_thread(basket_jpeg, category, seed)
        now = self.clock.now_ms()
        payload = encode_snapshot(jpeg, snapshot_id=uuid7(now), ts=now, session_id=session_id)
        await client.publish(self._topic(SNAPSHOT), payload, qos=1)
        self.snapshots_sent.append(category)

    async def _item(self, client: aiomqtt.Client, session_id: str, barcode: str) -> None:
        msg = CartItem(ts=self.clock.now_ms(), session_id=session_id, barcode=barcode)
        await client.publish(self._topic("item"), encode(msg), qos=1)
        self.items_scanned += 1

    # ---- screen and telemetry ----------------------------------------------------------

    async def _screen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            raw = message.payload if isinstance(message.payload, bytes) else b""
            try:
                screen = decode(raw, ScreenMessage)
            except ProtocolError as err:
                logger.warning("cart %s: bad screen message: %s", self.cart_id, err)
                continue
            self.screens.append(screen)
            ack = ScreenAck(msg_id=screen.msg_id, ts=self.clock.now_ms())
            await client.publish(self._topic("ack"), encode(ack), qos=1)

    async def _telemetry(self, client: aiomqtt.Client, rng: random.Random) -> None:
        battery = rng.uniform(60, 100)
        while True:
            battery = max(0.0, battery - rng.uniform(0.0, 0.05))
            msg = Telemetry(device_id=self.cart_id, device_kind=CART_KIND, samples=[
                Sample(ts=self.clock.now_ms(), values={"battery_pct": round(battery, 1)})])
            await client.publish(self._topic("tele"), encode(msg), qos=0)
            await asyncio.sleep(self.tele_interval_s)
