"""``storefleet demo``: the whole system embedded in one process.

An amqtt broker stands in for the cloud broker, the cloud API and an ingest worker
run on SQLite, one store's edge agent hosts its own embedded local bus, and a
simulated store of devices produces telemetry and events. The summary compares
what the devices produced with what the cloud stored, event id by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import typer
from prometheus_client import CollectorRegistry
from rich.console import Console

logger = logging.getLogger(__name__)


def _port(preferred: int) -> int:
    """``preferred`` if it is free on loopback, else any free port."""
    for candidate in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free TCP port")


@dataclass
class DemoOptions:
    duration: float | None
    store_id: str = "S001"
    devices: int = 6
    rate: float = 20.0
    data_dir: Path | None = None
    api_port: int = 8000
    broker_port: int = 1883
    local_bus_port: int = 1884
    metrics_port: int = 9108
    drain_timeout_s: float = 30.0
    full_store: bool = True  # carts, beacons and the other families on the demo layout
    carts: int = 3


@dataclass
class DemoResult:
    summary: dict[str, Any] = field(default_factory=dict)


# The demo store's trained positioning model, shipped as package data of ``models``.
DEMO_POSITIONING_MODEL = Path(str(resources.files("models.positioning")
                                  .joinpath("demo_store.onnx")))

# Shelf coupons for everyone at every shelf of the demo layout, on top of the sample
# bundle's rules (whose one shelf rule is for members lingering 3 s at the dairy shelf):
# the trained positioner tells shelves apart, the strongest beacon cannot.
_SHELF_COUPONS = {"D-1": ("DAIRY10", "10% off dairy", "乳制品9折"),
                  "A1-2": ("SNACK3", "3 off snacks", "零食立减3元"),
                  "A2-2": ("SNACK3", "3 off snacks", "零食立减3元")}
_ANY_SHELF = ("GROCERY5", "5 off your basket", "整单立减5元")
DEMO_SHELF_RULES: tuple[dict[str, Any], ...] = tuple(
    {"id": f"shelf-{shelf}", "shelf": shelf, "dwell_ms": 2000, "cooldown_ms": 600_000,
     "coupon": {"engine_code": code, "title": title, "title_zh": title_zh,
                "body": f"For stopping by shelf {shelf}."}}
    for shelf in ("P-1", "P-2", "K-1", "A1-1", "A1-2", "A2-1", "A2-2", "A3-1", "D-1")
    for code, title, title_zh in (_SHELF_COUPONS.get(shelf, _ANY_SHELF),))

# Shoppers who look at a shelf for a few seconds before taking something.
DEMO_DWELL_S = 3.0


def _in_aisle_settings(full_store: bool) -> dict[str, Any]:
    """Agent settings for coupon triggers and cart screens (the demo layout's sample data)."""
    if not full_store:
        return {}
    from edge_agent.cartscreen import SAMPLE_DATA
    from firmware_sim.layouts import DEFAULT_LAYOUT

    return {"cartscreen_port": _port(8090), "cartscreen_host": "127.0.0.1",
            "store_layout": str(DEFAULT_LAYOUT), "retail_data": str(SAMPLE_DATA),
            # carts located by the model trained from a simulated site survey of the demo
            # store (models/positioning/train_demo_store.py; no training at start)
            "positioning_model": DEMO_POSITIONING_MODEL,
            "trigger_rules": DEMO_SHELF_RULES,
            # no payment provider in a demo: the cart screen's "I have paid" confirms
            # (a store sets payment_secret and leaves this at "provider")
            "payment_confirmation": "screen", "unscanned_window_s": 10.0}


def _modules(full_store: bool, *, api: str, token: str, trusted_key: str,
             release_key: str, currency: str, lane_token: str | None = None,
             phone_key: str | None = None, store_id: str = "S001",
             cabinet_promotions: Path | None = None) -> dict[str, dict[str, Any]]:
    """The store box's modules: updates (rollouts of firmware, models and agent releases
    signed with the cloud's release key), and in the whole store the till following the
    cloud, in-aisle coupons and cart screens on the demo layout and sample data, and the
    carts' basket cameras (product recognition, vision-cued coupons, "seen but not
    scanned" alarms), and the content manifest (the audio schedule, decision 0050)."""
    updates = {"cloud_api": api, "cloud_api_token": token, "trusted_keys": [release_key]}
    if not full_store:
        return {"updates": updates}
    # the store's signed content manifest: manifests signed with the cloud's signing
    # key (as price books), assets with its release key (as rollout artifacts)
    content = {"cloud_api": api, "cloud_api_token": token, "trusted_keys": [trusted_key],
               "release_keys": [release_key], "retry_s": 2.0}
    till = _till_settings(full_store, api=api, token=token, trusted_key=trusted_key,
                          currency=currency)
    modules = {"till": till, "in_aisle": _in_aisle_settings(full_store), "vision": {},
               "updates": updates, "content": content}
    if lane_token is not None:  # one lane terminal over HTTP, its cashier screen at /till/
        # its receipts on the store's (simulated) receipt printer, as the till's
        till["lanes"] = {"host": "127.0.0.1", "port": 0, "lane": [
            {"id": "lane-1", "token": lane_token, "printer": f"{store_id}-printer-01"}]}
    if phone_key is not None:  # members' codes and spends at the store (decision 0064)
        modules["members"] = {"phone_key": phone_key, "currency": currency}
    if cabinet_promotions is not None:  # pickup and member codes at cabinets (0066)
        modules["cabinets"] = {"promotions_file": str(cabinet_promotions),
                               "currency": currency, "expiry_check_s": 5.0}
    return modules


def _sample_firmware(directory: Path, *, model: str, version: str) -> Path:
    """A bootable image for the simulated vending board (body + CRC-32 trailer), for a
    field tech to try a rollout on the demo (README, "Field tech quick start")."""
    from protocols import vending

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"vending-{model}-{version}.bin"
    if not path.exists():
        body = f"storefleet demo vending firmware {version}\n".encode() * 64
        path.write_bytes(vending.firmware_image(body))
    return path


def _in_aisle(agent: Any) -> Any:
    """The agent's in-aisle runtime (``InAisle``), or None when the module is not running."""
    from edge_agent.modules.in_aisle import InAisleModule

    module = agent.module("in_aisle")
    return module.in_aisle if isinstance(module, InAisleModule) else None


def _lanes_url(agent: Any) -> str | None:
    """Where the box serves its lane terminals (``/till/v1``), if it does."""
    from edge_agent.modules.till import Till

    till = agent.module("till")
    return till.lanes.url if isinstance(till, Till) and till.lanes is not None else None


def _till_settings(full_store: bool, *, api: str, token: str, trusted_key: str,
                   currency: str) -> dict[str, Any]:
    """The store box's till follows the cloud: its store-scoped device token, the demo's
    public key to verify snapshots and price books, and the store's currency and zone."""
    if not full_store:
        return {}
    from edge_agent.config import StoreSettings

    return {"cloud_api": api, "cloud_api_token": token, "trusted_keys": (trusted_key,),
            "currency": currency, "utc_offset_min": 480,
            # what the receipts print at the top (the demo store sits in Shanghai)
            "store": StoreSettings(name="storefleet demo store",
                                   address=("100 Nanjing East Road", "Huangpu, Shanghai"),
                                   tax_id="91310000DEMO00001X",
                                   tax_id_label="Tax ID", time_zone="Asia/Shanghai")}


def _metric(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    value = registry.get_sample_value(name, labels or {})
    return float(value or 0.0)


def _metric_sum(registry: CollectorRegistry, name: str, **match: str) -> float:
    """The sum of a metric's samples whose labels include ``match``."""
    return float(sum(sample.value for family in registry.collect()
                     for sample in family.samples
                     if sample.name == name
                     and all(sample.labels.get(k) == v for k, v in match.items())))


def _progress_line(*, t: float, stores: list[dict[str, Any]], kinds: dict[str, int],
                   produced: int, agent: Any, registry: CollectorRegistry,
                   order: str | None, cabinet: str | None = None) -> str:
    """One line every couple of seconds: the pipeline, then the retail activity as the
    cloud stored it (sales by channel, vends, coupon redemptions) and as the store did it
    (coupons triggered, labels acknowledged, the online order's status)."""
    online = sum(1 for s in stores if s["online"])
    devices = sum(int(s["devices_online"]) for s in stores)
    triggered = _in_aisle(agent).triggers.issued_total if _in_aisle(agent) is not None else 0
    labels = int(_metric_sum(registry, "storefleet_esl_acks_total", result="converged"))
    sales = kinds.get("sale", 0)
    cart = kinds.get("sale:cart", 0)
    return (f"  t={t:5.1f}s  stores {online}  devices {devices}  "
            f"device events {produced}  stored {sum(v for k, v in kinds.items() if ':' not in k)}"
            f"  outbox {int(_metric(registry, 'storefleet_outbox_depth'))}  |  "
            f"sales {sales} ({sales - cart} till, {cart} cart)  "
            f"vends {kinds.get('vend', 0)}  coupons {triggered} triggered, "
            f"{kinds.get('coupon_redeemed', 0)} redeemed  labels {labels} updated"
            + (f"  order {order}" if order else "")
            + (f"  cabinet {cabinet}" if cabinet else ""))


async def run_demo(opts: DemoOptions, *, console: Console, stop: asyncio.Event) -> dict[str, Any]:
    # Imported here so `storefleet demo --help` stays fast.
    import uvicorn

    from cloud.artifacts.service import release_signer
    from cloud.main import create_app
    from cloud.promotions.signing import SnapshotSigner
    from cloud.settings import CloudSettings, Role, TokenGrant
    from edge_agent.app import Agent
    from edge_agent.cartscreen import SAMPLE_DATA
    from edge_agent.cartscreen.server import EmbeddedServer
    from edge_agent.config import AgentConfig
    from edge_agent.errors import LinkError
    from edge_agent.localbus import amqtt_fix
    from edge_agent.localbus.embedded import EmbeddedBroker
    from firmware_sim.layouts import DEFAULT_LAYOUT
    from firmware_sim.store import (
        StoreSimulator,
        start_wired_sims,
        store_device_configs,
    )
    from protocols.vision import PRODUCT_CATEGORIES
    from storefleet import demo_retail
    from storefleet.demo_content import device_families, push_store_content

    tmp: tempfile.TemporaryDirectory[str] | None = None
    if opts.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="storefleet-demo-")
        data_dir = Path(tmp.name)
    else:
        data_dir = opts.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    token = secrets.token_urlsafe(24)
    device_token = secrets.token_urlsafe(24)  # the store box's own, bound to its store
    lane_token = secrets.token_urlsafe(32)  # lane 1's terminal (decision 0063)
    member_hash_key = secrets.token_urlsafe(32)  # phones hashed: cloud and box share it
    sample = demo_retail.load_sample(SAMPLE_DATA)
    currency = str(sample["catalog"]["currency"])
    api_port, broker_port = _port(opts.api_port), _port(opts.broker_port)
    local_port, metrics_port = _port(opts.local_bus_port), _port(opts.metrics_port)
    db_path = data_dir / "cloud.db"
    api = f"http://127.0.0.1:{api_port}"

    amqtt_fix.apply()
    async with contextlib.AsyncExitStack() as stack:
        broker = EmbeddedBroker(host="127.0.0.1", port=broker_port)
        await broker.start()
        stack.push_async_callback(broker.stop)

        cloud_registry = CollectorRegistry()
        # The demo's own promotion-signing key, kept with its data (PEM, Ed25519).
        key_file = data_dir / "signing-key.pem"
        _ensure_signing_key(key_file)
        # ... and its release key, which signs artifacts for rollouts (decision 0036)
        release_key_file = data_dir / "release-key.pem"
        _ensure_signing_key(release_key_file)
        settings = CloudSettings(
            database_url=f"sqlite:///{db_path}",
            mqtt_url=broker.url,
            share_group=None,  # amqtt has no $share
            ingest_client_id="demo-ingest",
            api_tokens={token: TokenGrant(role=Role.HQ_ADMIN),
                        device_token: TokenGrant(role=Role.DEVICE, stores=(opts.store_id,))},
            signing_key_file=str(key_file),
            release_key_file=str(release_key_file),
            artifact_dir=str(data_dir / "artifacts"),
            rollout_interval_s=1.0,  # a demo rollout advances within a second
            currency=currency,
            member_hash_key=member_hash_key,  # type: ignore[arg-type]  # SecretStr
            # members' rotating codes (decision 0064): their day keys derive from it
            member_code_secret=secrets.token_urlsafe(32),  # type: ignore[arg-type]
        )
        signer = SnapshotSigner.from_settings(settings)
        # the store box is provisioned with the cloud's public key (base64, raw Ed25519)
        trusted_key = str(signer.public_keys()[0]["public_key"])
        release = release_signer(settings)
        app = create_app(settings, registry=cloud_registry, ingest=True, signer=signer,
                         release=release)
        server = EmbeddedServer(uvicorn.Config(app, host="127.0.0.1", port=api_port,
                                               log_level="warning", lifespan="on"))
        server_task = asyncio.create_task(server.serve(), name="demo-api")

        async def stop_server() -> None:
            server.should_exit = True
            await asyncio.wait_for(server_task, timeout=15)

        stack.push_async_callback(stop_server)
        while not server.started:
            if server_task.done():
                server_task.result()
                raise RuntimeError("the API server stopped during start-up")
            await asyncio.sleep(0.05)

        agent_registry = CollectorRegistry()
        # The whole simulated store: the agent drives its BLE scanner (following the
        # simulated air) and its carts; the simulator runs every family it has.
        radio_path = data_dir / "ble-air.jsonl"
        radio_path.write_bytes(b"")
        printer_dir = data_dir / "printer"  # every page the simulated printer cuts
        store_devices: list[dict[str, Any]] = []
        wired_families: set[str] = set()
        sims: dict[str, Any] = {}  # the wired simulators by family (the cabinet's codes)
        cabinet_id: str | None = None
        cabinet_promotions = data_dir / "cabinet-promotions.json"
        cabinet_promotions.write_text(json.dumps(
            {**demo_retail.CABINET_PROMOTIONS, "currency": currency}), encoding="utf-8")
        if opts.full_store:
            store_devices = store_device_configs(DEFAULT_LAYOUT, radio_path=radio_path,
                                                 store_id=opts.store_id,
                                                 audio_cache_dir=data_dir / "edge" / "audio")
            # Serial and TCP devices (vending, receipt printer + drawer, scanner,
            # customer display) run on ptys and a TCP port before the agent opens them.
            wired, closers = await start_wired_sims(opts.store_id,
                                                    printer_out_dir=printer_dir, sims=sims)
            for device in wired:  # water in door 1 is near its best-before: marked down
                if device["family"] == "vending":
                    cabinet_id = str(device["id"])
                    device["options"]["doors"]["1"]["best_before_ms"] = (
                        int(time.time() * 1000) + 2 * 3_600_000)
            store_devices += wired
            wired_families = {"pos" if d["family"] in {"printer", "scanner", "display"}
                              else str(d["family"]) for d in wired}
            for close in closers:
                stack.push_async_callback(close)

        def make_agent(local_port: int) -> Agent:
            return Agent(
                AgentConfig(store_id=opts.store_id, data_dir=data_dir / "edge",
                            cloud_url=broker.url, local_bus="embedded",
                            local_bus_port=local_port, metrics_port=metrics_port,
                            metrics_host="127.0.0.1",
                            devices=store_devices,  # type: ignore[arg-type]  # dicts: validated
                            health_interval_s=1.0,
                            modules=_modules(opts.full_store, api=api, token=device_token,
                                             trusted_key=trusted_key,
                                             release_key=str(release.public_keys()[0]
                                                             ["public_key"]),
                                             currency=currency, lane_token=lane_token,
                                             phone_key=member_hash_key,
                                             store_id=opts.store_id,
                                             cabinet_promotions=cabinet_promotions)),
                registry=agent_registry,
            )

        # The store-local bus's port was free when it was chosen; another program can
        # take it before the agent binds it (seen once in CI). Then once more on a port
        # the system picks, rather than ending the demo.
        for attempt in (1, 2):
            agent = make_agent(local_port)
            agent_stop = asyncio.Event()
            agent_task = asyncio.create_task(agent.run(stop=agent_stop), name="demo-agent")
            ready = asyncio.create_task(agent.ready.wait(), name="demo-agent-ready")
            await asyncio.wait({ready, agent_task}, timeout=20,
                               return_when=asyncio.FIRST_COMPLETED)
            if agent.ready.is_set():
                break
            ready.cancel()
            failed = agent_task.exception() if agent_task.done() else None
            if attempt == 1 and isinstance(failed, LinkError) and \
                    "address already in use" in str(failed):
                logger.warning("store-local bus port %d was taken before the agent bound "
                               "it; using another", local_port)
                local_port = _port(0)
                agent_registry = CollectorRegistry()  # the first agent's metrics are in the old
                continue
            agent_stop.set()
            if not agent_task.done():
                agent_task.cancel()
            raise failed if failed is not None else TimeoutError("the agent was not ready "
                                                                "within 20 s")

        async def stop_agent() -> None:
            agent_stop.set()
            await asyncio.wait_for(agent_task, timeout=20)

        stack.push_async_callback(stop_agent)

        sim = StoreSimulator(bus_url=f"mqtt://127.0.0.1:{local_port}", store_id=opts.store_id,
                             devices=opts.devices, rate=opts.rate, tele_interval_s=2.0,
                             layout=DEFAULT_LAYOUT if opts.full_store else None,
                             carts=opts.carts, radio_path=radio_path,
                             cart_snapshots=opts.full_store, unscanned_share=0.15,
                             cart_site_radio=opts.full_store, cart_dwell_s=DEMO_DWELL_S,
                             # shoppers pay on their cart's screen at the end of a trip
                             cart_screen_url=(_in_aisle(agent).url if _in_aisle(agent) is not None
                                              else None))
        sim_stop = asyncio.Event()
        sim_task = asyncio.create_task(sim.run(sim_stop), name="demo-sim")

        console.print(f"[bold]storefleet demo[/bold]  data: {data_dir}")
        console.print(f"  API + docs     {api}/docs   (token: {token})")
        console.print(f"  cloud metrics  {api}/metrics")
        console.print(f"  agent metrics  http://127.0.0.1:{metrics_port}/metrics")
        if _in_aisle(agent) is not None and _in_aisle(agent).url is not None:
            # the whole-store simulator names its carts {store}-smartcart-NN
            carts = ", ".join(f"{_in_aisle(agent).url}/cart/{opts.store_id}-smartcart-{i + 1:02d}"
                              for i in range(opts.carts)) or f"{_in_aisle(agent).url}/cart/<id>"
            console.print(f"  cart screens   {carts}")
            locator = type(_in_aisle(agent).triggers.locator).__name__
            console.print(f"  positioning    {locator}"
                          + (f" ({DEMO_POSITIONING_MODEL.name})"
                             if locator == "PositionerLocator" else ""))
        console.print(f"  cloud broker   {broker.url}   store-local bus mqtt://127.0.0.1:{local_port}")
        if opts.full_store:
            console.print(f"  printer        {printer_dir}   (receipts and pick tickets)")
            if _lanes_url(agent) is not None:
                console.print(f"  cashier screen {_lanes_url(agent)}/till/   "
                              f"(lane-1 token: {lane_token})")
        console.print(f"  try: fleet stores --api {api} --token {token}")
        if opts.full_store:
            firmware = _sample_firmware(data_dir / "firmware", model="sim-lockboard",
                                        version="2.0.0")
            console.print(f"  a rollout      {firmware}   (README: Field tech quick start)")

        engine = sa.create_engine(f"sqlite:///{db_path}")
        stack.callback(engine.dispose)

        def stored_ids() -> set[str]:
            with engine.connect() as conn:
                return {r[0] for r in conn.execute(sa.text("SELECT id FROM events"))}

        def stored_by_kind() -> dict[str, int]:
            """Events in the cloud by kind; ``sale`` split by channel (``sale:cart``)."""
            with engine.connect() as conn:
                rows = conn.execute(sa.text(
                    "SELECT kind, CASE WHEN kind = 'sale' THEN json_extract(data, '$.channel')"
                    " END, count(*) FROM events GROUP BY 1, 2")).all()
            out: dict[str, int] = {}
            for kind, channel, n in rows:
                out[kind] = out.get(kind, 0) + int(n)
                if channel:
                    out[f"sale:{channel}"] = int(n)
            return out

        def stored_from(kind: str, device_ids: set[str]) -> int:
            with engine.connect() as conn:
                return sum(int(conn.execute(sa.text(
                    "SELECT count(*) FROM events WHERE kind = :k AND device_id = :d"),
                    {"k": kind, "d": d}).scalar() or 0) for d in sorted(device_ids))

        def vends_of(member_id: str | None) -> list[dict[str, Any]]:
            """The member's vends the cloud stored (each earned their points)."""
            with engine.connect() as conn:
                rows = conn.execute(sa.text(
                    "SELECT data FROM events WHERE kind = 'vend'"
                    " AND json_extract(data, '$.member_id') = :m"), {"m": member_id}).all()
            return [json.loads(r[0]) if isinstance(r[0], str) else dict(r[0]) for r in rows]

        def stored_twice() -> int:
            """Device events the cloud holds more than once under different ids: the same
            device, kind, timestamp and data (a redelivery that was given a new key)."""
            with engine.connect() as conn:
                return int(conn.execute(sa.text(
                    "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM events"
                    " WHERE device_id IS NOT NULL GROUP BY store_id, device_id, kind, ts,"
                    " CAST(data AS TEXT) HAVING count(*) > 1)")).scalar() or 0)

        async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {token}"},
                                     timeout=10) as http:
            content: dict[str, str] = {}
            retail: demo_retail.RetailDemo | None = None
            retail_tasks: list[asyncio.Task[None]] = []
            till_stop = asyncio.Event()
            if opts.full_store:
                # HQ pushes the price book and the audio schedule through the real path.
                await wait_store_online(http)
                content = await push_store_content(http, opts.store_id,
                                                   shelf_book=demo_retail.shelf_prices(sample))
                # HQ publishes prices and promotions; the till sells; an order comes in.
                retail = await demo_retail.hq_setup(http, opts.store_id, sample)
                if await demo_retail.wait_till_synced(agent, retail):
                    lanes_url = _lanes_url(agent)
                    retail_tasks = [
                        asyncio.create_task(demo_retail.cashier(agent, retail, till_stop),
                                            name="demo-cashier"),
                        asyncio.create_task(demo_retail.online_order(
                            http, agent, retail, lane_url=lanes_url, token=lane_token),
                            name="demo-online-order")]
                    if lanes_url is not None and await demo_retail.members_at_the_store(
                            http, agent, retail, opts.store_id):
                        retail_tasks.append(asyncio.create_task(
                            demo_retail.lane_shopper(http, agent, retail, till_stop,
                                                     lane_url=lanes_url, token=lane_token),
                            name="demo-lane-shopper"))
                        if cabinet_id is not None and "vending" in sims:
                            await demo_retail.cabinet_setup(http, opts.store_id, cabinet_id)
                            retail_tasks.append(asyncio.create_task(
                                demo_retail.cabinet_visits(
                                    http, agent, retail, sims["vending"],
                                    walk_ups=sims.get("vending_customers")),
                                name="demo-cabinet-visits"))
            deadline = None if opts.duration is None else started + opts.duration
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                if sim_task.done():
                    sim_task.result()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=2.0)
                if stop.is_set():
                    break
                stores = (await http.get("/api/v1/stores")).json()
                kinds = await asyncio.to_thread(stored_by_kind)
                order = (await demo_retail.order_status(http, retail.order_id)
                         if retail is not None and retail.order_id else None)
                console.print(_progress_line(
                    t=time.monotonic() - started, stores=stores, kinds=kinds,
                    produced=sim.produced, agent=agent, registry=agent_registry,
                    order=order, cabinet=(demo_retail.cabinet_progress(retail)
                                          if retail is not None else None)))

            # What the cloud sees while the store is running ...
            stores = (await http.get("/api/v1/stores")).json()
            devices = (await http.get("/api/v1/devices")).json()
            # ... then stop producing and give the pipeline time to deliver everything.
            sim_stop.set()
            till_stop.set()
            # the cabinet visit may wait up to a code step (30 s) for a fresh member code
            await _finish(retail_tasks, retail, timeout_s=45.0)
            # Devices finish their exchange first (every produced id is acknowledged); on a
            # starved machine that can take a while, and past a minute they are cut off
            # (an id counts as produced only once its device saw it acknowledged).
            try:
                async with asyncio.timeout(60):
                    await asyncio.shield(sim_task)
            except TimeoutError:
                console.print("[yellow]the simulated store was slow to stop; cut off[/]")
                sim_task.cancel()
                await asyncio.gather(sim_task, return_exceptions=True)
            produced = set(sim.produced_ids) | set(retail.till_sales if retail else ())
            drain_deadline = time.monotonic() + opts.drain_timeout_s
            while time.monotonic() < drain_deadline:
                if produced <= await asyncio.to_thread(stored_ids):
                    break
                await asyncio.sleep(0.2)
            retail_part: dict[str, Any] = {}
            if retail is not None:
                stored_now = await asyncio.to_thread(stored_ids)
                retail_part = await demo_retail.retail_summary(
                    http, retail, store_id=opts.store_id,
                    sales_in_cloud=len(set(retail.till_sales) & stored_now),
                    printer_dir=printer_dir,
                    member_vends=await asyncio.to_thread(vends_of, retail.member_id))
                retail_part |= demo_retail.shelf_agreement(agent)
                produced -= set(retail.till_sales)  # device events only, below
            events_page = (await http.get("/api/v1/events", params={"limit": 1})).json()
            flags = await http.get("/api/v1/coupon-flags", params={"reason": "not_allocated"})
            not_allocated = len(flags.json()) if flags.status_code == 200 else None

        stored = await asyncio.to_thread(stored_ids)
        twice = await asyncio.to_thread(stored_twice)
        kinds = await asyncio.to_thread(stored_by_kind)
        cabinets = {str(d["id"]) for d in store_devices if d["family"] == "vending"}
        from_cabinet = await asyncio.to_thread(stored_from, "vend", cabinets)
        families = device_families(devices)
        summary = {
            "duration_s": round(time.monotonic() - started, 1),
            "stores_online": sum(1 for s in stores if s["online"]),
            "devices_online": sum(1 for d in devices if d["online"]),
            "device_families_online": families,
            "device_families_with_telemetry": device_families(
                [d for d in devices if d.get("health")]
            ),
            "events_produced": len(produced),
            "events_published": int(_metric(agent_registry, "storefleet_events_published_total")),
            "events_stored": len(stored & produced),
            # ids the devices saw acknowledged that the cloud does not hold
            "events_lost": len(produced - stored),
            # one event held twice under different ids (a redelivery given a new key)
            "events_stored_twice": twice,
            # redeliveries the cloud recognised by id and did not store again
            "duplicates_suppressed": int(
                _metric(cloud_registry, "storefleet_ingest_duplicates_total")
            ),
            "outbox_depth": int(_metric(agent_registry, "storefleet_outbox_depth")),
            "api_events_page_ok": bool(events_page.get("items")),
            # what really ran: the bus simulators and the wired devices the agent drove
            "families_simulated": sorted(set(sim.families_started) | wired_families),
            "content_applied": content,
            "cart_sessions": sum(len(c.sessions) for c in sim.cart_sims),
            "coupons_triggered": (_in_aisle(agent).triggers.issued_total
                                  if _in_aisle(agent) is not None else 0),
            "positioning": (type(_in_aisle(agent).triggers.locator).__name__
                            if _in_aisle(agent) is not None else None),
            "shelf_coupons": _shelf_coupons(agent, agent_registry),
            "snapshots_classified": int(sum(
                _metric(agent_registry, "storefleet_vision_classified_total", {"category": c})
                for c in PRODUCT_CATEGORIES)),
            "vends": kinds.get("vend", 0),
            "vends_from_cabinet": from_cabinet,
            "sales_in_cloud_total": kinds.get("sale", 0),
            "sales_in_cloud_by_channel": {k.split(":", 1)[1]: v for k, v in sorted(kinds.items())
                                          if k.startswith("sale:")},
            "coupon_flags_not_allocated": not_allocated,
            "unscanned_alarms": int(sum(
                _metric(agent_registry, "storefleet_vision_unscanned_total", {"category": c})
                for c in PRODUCT_CATEGORIES)),
            **retail_part,
        }
    if tmp is not None:
        tmp.cleanup()
    return summary


def _ensure_signing_key(key_file: Path) -> None:
    """The demo's promotion and price-book signing key (PEM, Ed25519), kept with its data."""
    if key_file.exists():
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key_file.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key_file.chmod(0o600)


async def _finish(tasks: list[asyncio.Task[None]], retail: Any, *, timeout_s: float) -> None:
    """Let the cashier's last sale and the order's last step finish; failures are
    reported in the summary, not raised."""
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
        retail.errors.append(f"{task.get_name()} did not finish in {timeout_s:.0f} s")
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if (err := task.exception()) is not None:
            retail.errors.append(f"{task.get_name()}: {err}")


def _retail_ok(summary: dict[str, Any]) -> bool:
    """The retail part's own check: every till sale stored once; every sale (till and
    carts) audited by the cloud, re-priced to the same total, charged what it recorded;
    no coupon redeemed from a range the cloud did not allocate; the member's points what
    the receipts said, the order printed and handed over,
    every e-shelf label on the till's price."""
    if "till_sales" not in summary:
        return True
    return (summary["sales_in_cloud"] == summary["till_sales"] > 0
            and summary["reprice_mismatches"] == 0
            and summary["sales_unaudited"] == 0 and summary["sales_audit_pending"] == 0
            and summary["charged_differs"] == 0
            and summary["coupon_flags_not_allocated"] == 0
            and summary["member_points"] == summary["member_points_expected"]
            and summary["lane_sales"] >= 1 and summary["lane_points_used"] > 0
            and summary["lane_code_replays_refused"] == summary["lane_sales"]
            and summary["cabinet_pickup_doors_opened"] == [summary["cabinet_pickup_door"]]
            and summary["cabinet_pickup_second_try_opened"] == []
            and summary["cabinet_pickup_status"] == ["picked_up", "handed_over"]
            and summary["cabinet_member_vends_in_cloud"] == summary["cabinet_member_vends"] >= 1
            and summary["pick_ticket_printed"]
            and summary["online_order_status"] == "handed_over"
            and summary["online_order_paid_at_lane"] is not None
            and summary["shelf_prices_checked"] > 0 and not summary["shelf_prices_differ"]
            and not summary["retail_errors"])


def _shelf_coupons(agent: Any, registry: CollectorRegistry) -> int:
    """Coupons issued by shelf rules (the ones positioning has to get right)."""
    if _in_aisle(agent) is None:
        return 0
    return int(sum(_metric(registry, "storefleet_trigger_coupons_issued_total", {"rule": r.id})
                   for r in _in_aisle(agent).engine.rules if r.shelf is not None))


async def wait_store_online(http: httpx.AsyncClient, *, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        stores = (await http.get("/api/v1/stores")).json()
        if any(s["online"] for s in stores):
            return
        await asyncio.sleep(0.2)


def demo(*, duration: float | None, as_json: bool, store: str, devices: int, rate: float,
         data_dir: Path | None, api_port: int, log_level: str) -> None:
    """Run cloud, broker, one store's agent and simulated devices in one process (the
    ``storefleet demo`` command: its options, defaults and help are in storefleet/cli.py)."""
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # amqtt logs every client disconnect at warning level; keep the demo readable.
    logging.getLogger("amqtt").setLevel(max(logging.ERROR, logging.getLogger().level))
    console = Console(stderr=as_json, soft_wrap=True)  # keep URLs and tokens on one line
    opts = DemoOptions(duration=duration, store_id=store, devices=devices, rate=rate,
                       data_dir=data_dir, api_port=api_port)

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            if stop.is_set():  # asked twice: the user will not wait for the summary
                console.print(f"[red]{sig.name} again: stopping at once, no summary[/red]")
                os._exit(128 + sig.value)
            console.print(f"[bold]{sig.name}: stopping; delivering what is in flight and "
                          "checking it for the summary (press Ctrl-C again to abort)[/bold]")
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, on_signal, sig)
        return await run_demo(opts, console=console, stop=stop)

    summary = asyncio.run(main())
    console.print("[bold]summary[/bold]")
    for key, value in summary.items():
        console.print(f"  {key:24} {value}")
    ok = summary["events_lost"] == 0 and summary["events_stored_twice"] == 0
    console.print(f"[green]nothing lost, nothing stored twice ({summary['events_stored']} "
                  f"device events; {summary['duplicates_suppressed']} redeliveries "
                  "suppressed by id)[/green]" if ok
                  else "[red]events were lost or stored twice[/red]")
    if "till_sales" in summary:
        if _retail_ok(summary):
            console.print(f"[green]{summary['till_sales']} till sales in the cloud ledger, "
                          f"{summary['sales_audited']} sales (till and carts) re-priced by "
                          "the cloud to the same total, none unaudited, each charged what "
                          "it recorded; the online order printed at "
                          "the store, paid at lane 1 and handed over; "
                          f"{summary['shelf_prices_checked']} shelf labels on the till's "
                          "prices[/green]")
            console.print(f"[green]{summary['lane_sales']} lane sales over HTTP by the "
                          "member's signed code, their points authorised by the cloud and "
                          "the code refused when shown again; a cabinet pickup code opened "
                          f"door {summary['cabinet_pickup_door']} once; the member's vend at "
                          f"the cabinet marked down {summary['cabinet_member_vend_discount']} "
                          f"and earned {summary['cabinet_member_vend_points']} points; the "
                          "member's balance is what every receipt said[/green]")
        else:
            ok = False
            console.print("[red]retail: sales, re-pricing, points, the online order, the "
                          "lane, the cabinet or the shelf prices did not check out (see the "
                          "summary)[/red]")
    if as_json:
        typer.echo(json.dumps(summary))
    if not ok:
        raise typer.Exit(1)
