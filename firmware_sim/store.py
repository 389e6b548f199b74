"""A simulated store: N generic sensors on the store-local bus producing readings.

The simulator is the ground truth for "nothing lost" tests and the demo: every
event id a device got acknowledged by the bus is recorded (in memory and, with
``ledger``, one id per line in a file that survives the simulator).

With a ``layout`` (``firmware_sim/layouts/demo_store.toml``) it is the whole store:
besides the generic devices it runs ``carts`` smart-cart tablets walking the layout,
the layout's BLE beacons (advertisements appended to ``radio_path``, which the agent's
beacon driver follows with its replay backend), and every other device family whose
simulator package is present (``OTHER_FAMILIES``; imported guardedly, so a family that
is not there is skipped). ``store_device_configs`` gives the agent the matching
``[[agent.devices]]`` entries.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from firmware_sim.generic import DeviceSpec, GenericDevice
from firmware_sim.mqtturl import bus_address
from protocols.clock import Clock, SystemClock

logger = logging.getLogger(__name__)

# Device kinds of the generic simulator: plain IoT sensors that only report telemetry
# and sensor readings (``firmware_sim.generic``), never business events. They are
# deliberately not named after a driver family (cart, esl ...), so a family shows as
# online only when its real driver and simulator run.
GENERIC_KINDS = ("sensor", "footfall", "door_contact", "fridge_probe", "env_sensor", "gateway")

@dataclass
class StoreSimulator:
    bus_url: str
    store_id: str = "S001"
    devices: int = 6
    rate: float = 20.0  # events per second for the whole store; 0 = as fast as possible
    max_events: int | None = None
    tele_interval_s: float = 5.0
    ledger: Path | None = None
    seed: int = 7
    clock: Clock = field(default_factory=SystemClock)
    produced_ids: list[str] = field(default_factory=list)
    queued: int = 0
    # the whole store (all off by default: the generic behaviour is unchanged)
    layout: Path | None = None
    carts: int = 0
    radio_path: Path | None = None
    other_families: bool = True
    # the carts' basket cameras upload JPEG snapshots; this share of pictured products
    # goes into the basket unscanned ("seen but not scanned" on the store box)
    cart_snapshots: bool = False
    unscanned_share: float = 0.0
    cart_site_radio: bool = False  # carts hear beacons through firmware_sim.rf's model
    cart_dwell_s: float = 1.0  # how long a shopper stands at a shelf before picking
    # the agent's cart-screen server (``InAisle.url``): carts pay there at the end of each
    # trip, so the store records cart sales (``CartSimulator.screen_url``); None: unpaid
    cart_screen_url: str | None = None
    cart_sims: list[Any] = field(default_factory=list)
    families_started: list[str] = field(default_factory=list)

    def specs(self) -> list[DeviceSpec]:
        return [
            DeviceSpec(device_id=f"{self.store_id}-{kind}-{i:02d}", kind=kind)
            for i, kind in ((i, GENERIC_KINDS[i % len(GENERIC_KINDS)]) for i in range(self.devices))
        ]

    @property
    def produced(self) -> int:
        return len(self.produced_ids)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set or ``max_events`` were produced and acknowledged."""
        bus = bus_address(self.bus_url)
        rng = random.Random(self.seed)
        ledger: IO[str] | None = None
        if self.ledger is not None:
            self.ledger.parent.mkdir(parents=True, exist_ok=True)
            ledger = self.ledger.open("a", buffering=1)

        def produced(event_id: str) -> None:
            self.produced_ids.append(event_id)
            if ledger is not None:
                ledger.write(event_id + "\n")

        devices = [
            GenericDevice(
                spec=spec,
                bus=bus,
                clock=self.clock,
                tele_interval_s=self.tele_interval_s,
                on_produced=produced,
                rng=random.Random(rng.random()),
            )
            for spec in self.specs()
        ]
        queues: list[asyncio.Queue[int]] = [asyncio.Queue(maxsize=1000) for _ in devices]
        device_stop = asyncio.Event()
        tasks = [
            asyncio.create_task(dev.run(q, device_stop), name=f"sim-{dev.spec.device_id}")
            for dev, q in zip(devices, queues, strict=True)
        ]
        families = asyncio.create_task(self._run_families(device_stop), name="sim-families")
        try:
            await self._generate(queues, stop, tasks)
        finally:
            device_stop.set()
            try:
                await families
            except Exception as err:  # a family simulator's failure must not hide the ledger
                logger.warning("store families ended with %r", err)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for dev, res in zip(devices, results, strict=True):
                if isinstance(res, BaseException) and not isinstance(res, asyncio.CancelledError):
                    logger.warning("device %s ended with %r", dev.spec.device_id, res)
            if ledger is not None:
                ledger.close()

    async def _run_families(self, stop: asyncio.Event) -> None:
        if self.layout is not None:
            await _run_families_impl(self, stop)

    async def _generate(
        self,
        queues: list[asyncio.Queue[int]],
        stop: asyncio.Event,
        tasks: list[asyncio.Task[None]],
    ) -> None:
        """Hand the devices their turns in rotation, ``rate`` readings a second."""
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set() and (self.max_events is None or self.queued < self.max_events):
            if any(t.done() for t in tasks):
                raise RuntimeError("a simulated device stopped unexpectedly") from next(
                    (t.exception() for t in tasks if t.done() and not t.cancelled()), None
                )
            await queues[self.queued % len(queues)].put(self.queued)
            self.queued += 1
            if interval:
                next_at += interval
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif self.queued % 200 == 0:
                await asyncio.sleep(0)
        # Let devices drain their queues before the caller stops them.
        while any(not q.empty() for q in queues) and not all(t.done() for t in tasks):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # queue sizes: nothing signals them


# ---- the whole store ---------------------------------------------------------------------

Closer = Callable[[], Awaitable[None]]

# Other engineers' device families: (family, module, start function). Each is started
# only if its simulator package imports; see ``_start_other``.
OTHER_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("audio", "firmware_sim.audio", "start_audio_unit_sim"),
    ("esl", "firmware_sim.esl", "start_esl_ap_sim"),
)


ESL_LABELS = 12  # labels on the simulated access point (see ``_start_other``)

# The vending cabinet's planogram: door -> item number, price (minor units), sku. The
# driver is configured with it and the simulated customers press these doors.
CABINET_DOORS: dict[int, dict[str, Any]] = {
    1: {"item": 11, "price": 300, "sku": "WATER-500"},
    2: {"item": 12, "price": 450, "sku": "COLA-330"},
}
# A customer at the cabinet about this often (seconds): a busy cabinet's pace, and
# several vends in a minute of demo.
CUSTOMER_EVERY_S = 8.0


def store_device_configs(layout: Path, *, radio_path: Path, store_id: str = "S001",
                         silent_after_s: float = 30.0,
                         audio_cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """The agent's ``devices`` for a simulated store: its BLE scanner, its carts, and
    (with ``audio_cache_dir``) the ESL access point and the audio unit that
    ``_start_other`` simulates on the local bus."""
    from firmware_sim.layouts import Layout

    plan = Layout.load(layout)
    configs: list[dict[str, Any]] = [
        {"id": "ble-scanner", "family": "beacon", "model": "sim-radio", "options": {
            "backend": "replay", "recording": str(radio_path), "follow": True,
            "installed": [{"key": b.key, "name": b.id} for b in plan.beacons],
            "silent_after_s": silent_after_s}},
        {"id": "carts", "family": "cart", "model": "cart-fleet"},
    ]
    if audio_cache_dir is not None:
        skus = plan_skus(layout) or ["SKU-0"]
        configs += [
            {"id": f"{store_id}-esl-01", "family": "esl", "model": "sim-esl-ap", "options": {
                "labels": {f"{store_id}-lbl-{i:03d}": skus[i % len(skus)]
                           for i in range(ESL_LABELS)}}},
            {"id": f"{store_id}-audio-01", "family": "audio", "model": "sim-audio-unit",
             "options": {"cache_dir": str(audio_cache_dir)}},
        ]
    return configs


def plan_skus(layout: Path) -> list[str]:
    """Every sku on the layout's shelves, in shelf order."""
    from firmware_sim.layouts import Layout

    plan = Layout.load(layout)
    return [sku for shelf in plan.shelves for sku in shelf.skus]


async def start_wired_sims(store_id: str, *, printer_out_dir: Path | None = None,
                           customer_every_s: float = CUSTOMER_EVERY_S, seed: int = 7,
                           sims: dict[str, Any] | None = None
                           ) -> tuple[list[dict[str, Any]], list[Closer]]:
    """Start the store's serial and TCP devices — a vending cabinet and a lock board on
    a pty, an ESC/POS receipt printer (with its cash drawer) on TCP, a barcode scanner
    and a customer display on ptys — and return the agent ``devices`` that drive them.
    ``printer_out_dir``: where the printer writes each page it cuts (``receipt-NNNN.txt``).

    Customers buy at the cabinet about every ``customer_every_s`` seconds (0: none),
    some with a member card (``firmware_sim.vending.customers``): the ``vend`` events of
    the store come from the agent's vending driver running those sessions over the pty.
    The family of each returned device is one whose simulator runs. ``sims``, if given,
    gets the simulators by family (``vending``: the cabinet, for a shopper's codes;
    ``vending_customers``: its walk-up customers, to pause them)."""
    from firmware_sim.display import start_display_sim
    from firmware_sim.printer.sim import start_printer_sim
    from firmware_sim.scanner import start_scanner_sim
    from firmware_sim.vending.customers import CabinetCustomers
    from firmware_sim.vending.sim import start_vending_sim

    closers: list[Closer] = []
    cabinet, cabinet_task = await start_vending_sim()
    if sims is not None:
        sims["vending"] = cabinet
    customers_stop = asyncio.Event()
    customers_task: asyncio.Task[None] | None = None
    if customer_every_s > 0:
        customers = CabinetCustomers(
            cabinet, {door: int(slot["price"]) for door, slot in CABINET_DOORS.items()},
            every_s=customer_every_s, seed=seed)
        customers_task = asyncio.create_task(customers.run(customers_stop),
                                             name="sim-vending-customers")
        if sims is not None:
            sims["vending_customers"] = customers

    async def close_cabinet() -> None:
        customers_stop.set()
        if customers_task is not None:
            customers_task.cancel()  # a customer waiting on the reader leaves at once
            [ended] = await asyncio.gather(customers_task, return_exceptions=True)
            if isinstance(ended, Exception):  # the cabinet still closes; say why they stopped
                logger.warning("vending customers ended with %r", ended)
        cabinet_task.cancel()
        await asyncio.gather(cabinet_task, return_exceptions=True)
        cabinet.port.close()

    closers.append(close_cabinet)
    printer, server = await start_printer_sim(port=0, out_dir=printer_out_dir)

    async def close_printer() -> None:
        server.close()
        await printer.aclose()
        await server.wait_closed()

    closers.append(close_printer)
    scanner = await start_scanner_sim()

    async def close_scanner() -> None:
        scanner.port.close()

    closers.append(close_scanner)
    display, display_task = await start_display_sim()

    async def close_display() -> None:
        display_task.cancel()
        await asyncio.gather(display_task, return_exceptions=True)
        display.port.close()

    closers.append(close_display)
    configs: list[dict[str, Any]] = [
        {"id": f"{store_id}-vend-01", "family": "vending", "model": "sim-lockboard",
         "options": {"port": cabinet.port.path,
                     "doors": {str(door): dict(slot) for door, slot in CABINET_DOORS.items()}}},
        {"id": f"{store_id}-printer-01", "family": "printer", "model": "sim-escpos",
         "options": {"host": "127.0.0.1", "tcp_port": server.sockets[0].getsockname()[1]}},
        {"id": f"{store_id}-scanner-01", "family": "scanner", "model": "sim-aim",
         "options": {"port": scanner.port.path}},
        {"id": f"{store_id}-display-01", "family": "display", "model": "sim-vfd-2x20",
         "options": {"port": display.port.path}},
    ]
    return configs, closers


async def _run_families_impl(sim: StoreSimulator, stop: asyncio.Event) -> None:
    from firmware_sim.beacon import BeaconRadio
    from firmware_sim.cart import CartSimulator
    from firmware_sim.layouts import Layout

    assert sim.layout is not None
    layout = Layout.load(sim.layout)
    tasks: list[asyncio.Task[None]] = []
    for i in range(sim.carts):
        cart = CartSimulator(cart_id=f"{sim.store_id}-smartcart-{i + 1:02d}",
                             bus_url=sim.bus_url, layout=layout, clock=sim.clock, seed=sim.seed + i,
                             snapshots=sim.cart_snapshots, unscanned_share=sim.unscanned_share,
                             site_radio=sim.cart_site_radio, dwell_s=sim.cart_dwell_s,
                             screen_url=sim.cart_screen_url)
        sim.cart_sims.append(cart)
        tasks.append(asyncio.create_task(cart.run(stop), name=f"sim-{cart.cart_id}"))
    if sim.carts:
        sim.families_started.append("cart")
    if sim.radio_path is not None:
        radio = BeaconRadio(layout, sim.radio_path, seed=sim.seed)
        tasks.append(asyncio.create_task(radio.run(stop), name="sim-beacon-radio"))
        sim.families_started.append("beacon")
    closers = await _start_other(sim) if sim.other_families else []
    try:
        await stop.wait()
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for close in closers:
            try:
                await close()
            except Exception as err:  # stopping one family must not skip the others
                logger.warning("stopping a family simulator failed: %r", err)


async def _start_other(sim: StoreSimulator) -> list[Closer]:
    closers: list[Closer] = []
    for family, module, function in OTHER_FAMILIES:
        try:
            start = getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError) as err:
            logger.info("family %s has no simulator here (%s)", family, err)
            continue
        device_id = f"{sim.store_id}-{family}-01"
        kwargs: dict[str, Any] = {"clock": sim.clock}
        if family == "audio":
            kwargs["unit_id"] = device_id
        elif family == "esl":
            kwargs |= {"ap_id": device_id,
                       "labels": [f"{sim.store_id}-lbl-{i:03d}" for i in range(12)]}
        try:
            family_sim = await start(sim.bus_url, **kwargs)
        except Exception as err:  # another family's simulator failing must not stop ours
            logger.warning("family %s simulator did not start: %r", family, err)
            continue
        closers.append(family_sim.aclose)
        sim.families_started.append(family)
    return closers
