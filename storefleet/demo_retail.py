"""The demo's retail part: HQ sets the store up through the REST API, the store's till
sells, an online order is printed at the store, and the cloud checks every total.

Everything goes through the production paths (decision 0017):

- HQ publishes the sample catalog as the chain's signed **price book** and the sample
  promotions as a signed **promotion snapshot**, allocates the store's coupon-code
  ranges, sets the store's location and stock, and enrols a member (phone hashed).
- The store box's till downloads and verifies both (``AgentConfig.cloud_api`` with a
  store-scoped device token and the demo's public key), so the till, the cart screens
  (which price from the till's caches) and the e-shelf labels (sent the same book's
  prices) show one price.
- A cashier (this module, in place of the till's UI) rings up a sale every few seconds,
  every other one for the member; each prints a receipt on the simulated printer over
  ESC/POS and leaves through the outbox as ``sale`` events, which the cloud re-prices
  with the snapshot version the sale names.
- A shopper's online pickup order placed through ``POST /api/v1/orders`` goes to the
  store (the nearest one with stock), whose printer prints the pick ticket; store staff
  move it through picking, ready and handed over, and the statuses flow back.

``retail_summary`` then reads the cloud's side: sales stored, what the cloud's audit
concluded on every sale (``GET /api/v1/promotions/audit``: re-priced to the same total,
mismatched, unaudited, money charged that differs from the sale), the member's points
against what the till's receipts said they earned, and the order's status history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edge_agent.modules.till import Till
from edge_agent.pos.sales import PosError, Tenders
from pricing import Basket, Line, Member
from protocols import membercode

logger = logging.getLogger(__name__)

# Where the demo store is (order routing picks the nearest store that has the stock).
STORE_LOCATION = (31.2304, 121.4737)
SHOPPER_LOCATION = (31.2310, 121.4750)
DEMO_PHONE = "+86 138 0013 8000"
WELCOME_POINTS = 500
STOCK_PER_SKU = 40
RANGE_SIZE = 1_000  # single-use coupon codes the store may issue (cart triggers, offline)
ORDER_STEPS = ("picking", "ready", "handed_over")
CASHIER = "Demo cashier"


@dataclass
class RetailDemo:
    """What the demo's retail part did, for the summary."""

    currency: str
    names: dict[str, str]  # sku -> name, as the shopper's app shows them
    member_id: str | None = None
    till_sales: list[str] = field(default_factory=list)
    member_points_earned: int = 0
    refused: int = 0
    order_id: str | None = None
    order_store: str | None = None
    order_steps_done: list[str] = field(default_factory=list)
    order_sale: str | None = None  # the lane sale that collected it (decision 0069)
    member_points_used: int = 0
    lane_sales: list[str] = field(default_factory=list)  # sold at the lane over HTTP
    lane_code_refused: int = 0  # the member's code shown twice: refused as replayed
    cabinet_order_id: str | None = None  # an online order collected at the cabinet
    cabinet_door: int | None = None  # the door the cloud reserved for it
    cabinet_doors_opened: list[int] = field(default_factory=list)  # by its pickup code
    cabinet_second_try: list[int] = field(default_factory=list)  # the same code again
    cabinet_member_vends: int = 0  # vends the cabinet made for the member's code
    code_steps: set[int] = field(default_factory=set)  # member code steps shown so far
    errors: list[str] = field(default_factory=list)


def load_sample(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def shelf_prices(sample: dict[str, Any]) -> dict[str, Any]:
    """The price book's prices in the e-shelf labels' command shape."""
    catalog = sample["catalog"]
    return {"version": int(catalog["version"]), "currency": str(catalog["currency"]),
            "items": {sku: {"price_minor": int(item["price"])}
                      for sku, item in catalog["items"].items()}}


POINTS_TENDER = {"kind": "points_tender", "id": "pay-points", "block_points": 100,
                 "block_minor": 100}


async def _ok(resp: httpx.Response, what: str) -> Any:
    if resp.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {resp.status_code} {resp.text[:300]}")
    return resp.json()


async def hq_setup(http: httpx.AsyncClient, store_id: str, sample: dict[str, Any]) -> RetailDemo:
    """What HQ does before the store opens, all through ``/api/v1``."""
    catalog = sample["catalog"]
    items = list(catalog["items"].values())
    demo = RetailDemo(currency=str(catalog["currency"]),
                      names={sku: str(item.get("name") or sku)
                             for sku, item in sorted(catalog["items"].items())})
    await _ok(await http.post("/api/v1/price-books",
                              json={"currency": demo.currency, "items": items}),
              "publish the price book")
    coupon_codes = []
    for promo in sample["promotions"]["promotions"]:
        await _ok(await http.put(f"/api/v1/promotions/{promo['id']}",
                                 json={"promotion": promo}), f"promotion {promo['id']}")
        if promo["kind"] == "coupon":
            coupon_codes.append(promo["code"])
    # members pay with points at the lanes: 100 points are 1.00 off
    await _ok(await http.put(f"/api/v1/promotions/{POINTS_TENDER['id']}",
                             json={"promotion": POINTS_TENDER}), "points as a tender")
    await _ok(await http.post("/api/v1/promotions/publish"), "publish the promotions")
    for code in coupon_codes:
        await _ok(await http.post(f"/api/v1/stores/{store_id}/coupon-ranges",
                                  json={"engine_code": code, "count": RANGE_SIZE}),
                  f"coupon range for {code}")
    lat, lon = STORE_LOCATION
    await _ok(await http.put(f"/api/v1/stores/{store_id}/location",
                             json={"lat": lat, "lon": lon}), "store location")
    await _ok(await http.put(f"/api/v1/stores/{store_id}/stock",
                             json={"levels": dict.fromkeys(demo.names, STOCK_PER_SKU)}),
              "store stock")
    member = await _ok(await http.post("/api/v1/members", json={"phone": DEMO_PHONE}),
                       "enrol the member")
    demo.member_id = str(member["member_id"])
    await _ok(await http.post(f"/api/v1/members/{demo.member_id}/points/earn",
                              json={"points": WELCOME_POINTS, "op_id": "demo-welcome"}),
              "welcome points")
    return demo


async def _poll(check: Any, *, timeout_s: float, every_s: float = 0.2) -> bool:
    """Whether ``check()`` (sync or async) came true within ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return True
        await asyncio.sleep(every_s)
    return False


async def wait_till_synced(agent: Any, demo: RetailDemo, *, timeout_s: float = 30.0) -> bool:
    """Until the till has verified the published snapshot and price book."""
    pos = agent.get(Till).pos

    def synced() -> bool:
        catalog = pos.catalog.catalog
        return bool(pos.synced.is_set() and pos.pricebook.version is not None
                    and catalog is not None and catalog.currency == demo.currency)

    if await _poll(synced, timeout_s=timeout_s):
        return True
    demo.errors.append("the till did not sync the published snapshot and price book")
    return False


async def cashier(agent: Any, demo: RetailDemo, stop: asyncio.Event, *,
                  every_s: float = 3.0, seed: int = 7) -> None:
    """Rings up a sale every ``every_s``; every other one for the member."""
    rng = random.Random(seed)
    n = 0
    while not stop.is_set():
        n += 1
        skus = rng.sample(sorted(demo.names), rng.randint(2, 5))
        lines = [Line(line_id=str(i), sku=sku, qty=rng.randint(1, 3))
                 for i, sku in enumerate(skus, 1)]
        member = (Member(id=demo.member_id, currency=demo.currency)
                  if demo.member_id and n % 2 else None)
        try:
            sale = await agent.get(Till).pos.service.sell(
                lines, member=member, tenders=Tenders(method="cash" if n % 3 else "card"),
                cashier=CASHIER)
        except PosError as err:
            demo.refused += 1
            logger.warning("demo sale refused: %s", err)
        else:
            demo.till_sales.append(sale.sale_id)
            if member is not None:
                demo.member_points_earned += sale.priced.points_earned
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)


async def online_order(http: httpx.AsyncClient, agent: Any, demo: RetailDemo, *,
                       step_s: float = 1.0, lane_url: str | None = None,
                       token: str | None = None) -> None:
    """A shopper orders for pickup; the store prints it and picks it. The shopper pays
    for it at lane 1 (``POST /till/v1/sales`` naming the order, decision 0069), which
    hands it over; without lanes the desk hands it over."""
    lat, lon = SHOPPER_LOCATION
    body = {"fulfilment": "pickup", "lat": lat, "lon": lon,
            "customer": {"name": "Demo shopper"}, "member_id": demo.member_id,
            "lines": [{"sku": sku, "qty": 1, "name": demo.names[sku][:80]}
                      for sku in sorted(demo.names)[:3]]}
    order = await _ok(await http.post("/api/v1/orders", json=body,
                                      headers={"Idempotency-Key": "storefleet-demo-order-1"}),
                      "place the online order")
    demo.order_id, demo.order_store = str(order["order_id"]), str(order["store_id"])
    # the store box accepts (and prints) it when the dispatch arrives over MQTT
    order_id = demo.order_id

    async def accepted() -> bool:
        return await order_status(http, order_id) == "accepted"

    if not await _poll(accepted, timeout_s=20.0):
        raise RuntimeError(f"order {order_id} was not accepted by store {demo.order_store}")
    at_lane = lane_url is not None and token is not None
    for step in ORDER_STEPS[:-1] if at_lane else ORDER_STEPS:  # staff at the order desk
        await asyncio.sleep(step_s)
        await agent.get(Till).pos.orders.advance(order_id, step)
        demo.order_steps_done.append(step)
    if not at_lane:
        return
    await asyncio.sleep(step_s)
    async with httpx.AsyncClient(base_url=str(lane_url), timeout=10,
                                 headers={"Authorization": f"Bearer {token}"}) as lane:
        resp = await lane.post("/till/v1/sales", json={
            "order_id": order_id, "cashier": "Lane 1", "tender": {"method": "card"}})
    if resp.status_code != 200:
        demo.errors.append(f"order sale at the lane: HTTP {resp.status_code} "
                           f"{resp.text[:200]}")
        return
    sale = resp.json()
    demo.till_sales.append(sale["sale_id"])
    demo.order_sale = sale["sale_id"]
    demo.member_points_earned += int(sale["points_earned"])
    if sale["order_handed_over"]:
        demo.order_steps_done.append("handed_over")


async def members_at_the_store(http: httpx.AsyncClient, agent: Any, demo: RetailDemo,
                               store_id: str, *, timeout_s: float = 30.0) -> bool:
    """HQ makes the demo member a member of this store and publishes the store's member
    snapshot (signed, in its content manifest); until the box has taken it."""
    assert demo.member_id is not None
    await _ok(await http.put(f"/api/v1/members/{demo.member_id}/home-store",
                             json={"store_id": store_id}), "the member's home store")
    await _ok(await http.post("/api/v1/member-snapshots/publish",
                              json={"stores": [store_id]}), "publish the member snapshot")
    members = agent.module("members")
    if await _poll(lambda: members is not None and members.snapshot is not None,
                   timeout_s=timeout_s):
        return True
    demo.errors.append("the box did not take the member snapshot")
    return False


async def member_code(http: httpx.AsyncClient, agent: Any, demo: RetailDemo) -> str:
    """The code the member's phone shows now: the app fetches the member's day keys
    from the cloud and signs the current 30 s step (``protocols.membercode``). A box
    takes each step's code once (a replay is refused), so the demo member, at the lane
    and at the cabinet within the same half minute, waits for the next step."""
    assert demo.member_id is not None
    now_ms = agent.clock.now_ms()
    while membercode.step_of(now_ms) in demo.code_steps:
        await asyncio.sleep((membercode.STEP_MS - now_ms % membercode.STEP_MS) / 1000 + 0.05)
        now_ms = agent.clock.now_ms()
    demo.code_steps.add(membercode.step_of(now_ms))
    doc = await _ok(await http.get(f"/api/v1/members/{demo.member_id}/code-keys"),
                    "the member's code keys")
    key = membercode.decode_key(doc["keys"][str(membercode.day_of(now_ms))])
    return membercode.make(key, demo.member_id, now_ms=now_ms)


async def lane_shopper(http: httpx.AsyncClient, agent: Any, demo: RetailDemo,
                       stop: asyncio.Event, *, lane_url: str, token: str,
                       every_s: float = 31.0, seed: int = 11) -> None:
    """The member at lane 1: shows the code on their phone, the lane terminal sends the
    whole sale (``POST /till/v1/sales``) paying 100 points and the rest by card; the box
    has the cloud authorise the points. The code shown again is refused (replayed). A
    code is good for one 30 s step, so one sale a step."""
    rng = random.Random(seed)
    assert demo.member_id is not None
    async with httpx.AsyncClient(base_url=lane_url, timeout=10,
                                 headers={"Authorization": f"Bearer {token}"}) as lane:
        while not stop.is_set():
            code = await member_code(http, agent, demo)
            skus = rng.sample(sorted(demo.names), rng.randint(2, 4))
            body = {"lines": [{"code": sku, "qty": rng.randint(1, 2)} for sku in skus],
                    "member": {"code": code}, "cashier": "Lane 1",
                    "tender": {"method": "card", "points": 100}}
            resp = await lane.post("/till/v1/sales", json=body)
            if resp.status_code != 200:
                demo.errors.append(f"lane sale: HTTP {resp.status_code} {resp.text[:200]}")
                return
            sale = resp.json()
            demo.till_sales.append(sale["sale_id"])
            demo.lane_sales.append(sale["sale_id"])
            demo.member_points_earned += int(sale["points_earned"])
            demo.member_points_used += int(sale["points_used"])
            again = await lane.post("/till/v1/sales", json={**body, "sale_id": None})
            if again.status_code == 403 and again.json().get("reason") == "replayed":
                demo.lane_code_refused += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)


# The cabinet's promotions (decision 0066): 30 % off what is within a day of its
# best-before, a point per yuan paid; priced on the box by the one engine.
CABINET_PROMOTIONS = {
    "version": 1, "promotions": [
        {"kind": "markdown", "id": "near-expiry", "scope": {"skus": ["WATER-500", "COLA-330"]},
         "percent_bp": 3_000, "near_expiry_within_min": 24 * 60},
        {"kind": "points_earn", "id": "cabinet-points", "points": 1, "per_minor": 100}]}
PICKUP_SKU, PICKUP_UNITS = "COLA-330", 6  # what the cabinet's door 2 holds for orders


async def cabinet_setup(http: httpx.AsyncClient, store_id: str, cabinet_id: str) -> None:
    """HQ registers the store's cabinet: where it stands and what its doors hold (the
    routing of cabinet orders counts on it)."""
    lat, lon = STORE_LOCATION
    await _ok(await http.put(f"/api/v1/stores/{store_id}/cabinets/{cabinet_id}", json={
        "lat": lat, "lon": lon, "doors": {"2": {"sku": PICKUP_SKU, "qty": PICKUP_UNITS}}}),
        "register the cabinet")


async def cabinet_visits(http: httpx.AsyncClient, agent: Any, demo: RetailDemo,
                         cabinet: Any, *, walk_ups: Any = None) -> None:
    """A shopper orders online to collect at the nearest cabinet, then enters the pickup
    code there: exactly the reserved door opens, once (the code again opens nothing).
    Then the member shows their code at the cabinet and buys: the vend is theirs,
    priced by the engine with the cabinet's near-expiry markdown, and earns points."""
    lat, lon = SHOPPER_LOCATION
    order = await _ok(await http.post("/api/v1/cabinet-orders", json={
        "idempotency_key": "storefleet-demo-cabinet-1", "member_id": demo.member_id,
        "lines": [{"sku": PICKUP_SKU, "qty": 1}], "customer": {"name": "Demo shopper"},
        "lat": lat, "lon": lon}), "order to collect at a cabinet")
    demo.cabinet_order_id, demo.cabinet_door = str(order["order_id"]), int(order["door"])
    order_id = demo.cabinet_order_id

    async def held() -> bool:  # the box has the pickup (dispatched over MQTT)
        return await cabinet_status(http, order_id) == ("ready", "ready")

    if not await _poll(held, timeout_s=30.0):
        demo.errors.append(f"cabinet order {order_id} never became ready at the box")
        return
    if walk_ups is not None:  # the shopper has the cabinet to themselves for a moment
        walk_ups.paused = True
    try:
        if not await _poll(lambda: cabinet.idle and not cabinet.open_doors, timeout_s=20.0):
            demo.errors.append("the cabinet stayed busy: no pickup, no member vend")
            return
        await _collect_and_vend(http, agent, demo, cabinet, str(order["pickup_code"]))
    finally:
        if walk_ups is not None:
            walk_ups.paused = False


async def _collect_and_vend(http: httpx.AsyncClient, agent: Any, demo: RetailDemo,
                            cabinet: Any, pickup_code: str) -> None:
    assert demo.cabinet_door is not None
    demo.cabinet_doors_opened = await cabinet.collect(pickup_code)
    cabinet.close_door(demo.cabinet_door)  # the shopper took the goods
    demo.cabinet_second_try = await cabinet.collect(pickup_code)
    code = await member_code(http, agent, demo)
    vend = await cabinet.member_vend(code, door=1, funds=1_000)
    if vend is None or not vend.success:
        demo.errors.append(f"the member's vend at the cabinet did not succeed: {vend}")
        return
    demo.cabinet_member_vends += 1


def cabinet_progress(demo: RetailDemo) -> str | None:
    """The cabinet visits for the progress line: ordered, collected, done."""
    if demo.cabinet_order_id is None:
        return None
    if demo.cabinet_member_vends:
        return "done"
    return "collected" if demo.cabinet_doors_opened else "ordered"


async def cabinet_status(http: httpx.AsyncClient, order_id: str) -> tuple[str, str]:
    resp = await http.get(f"/api/v1/cabinet-orders/{order_id}")
    if resp.status_code != 200:
        return ("unknown", "unknown")
    doc = resp.json()
    return str(doc["pickup_status"]), str(doc["order_status"])


async def order_status(http: httpx.AsyncClient, order_id: str) -> str:
    resp = await http.get(f"/api/v1/orders/{order_id}")
    return str(resp.json().get("status")) if resp.status_code == 200 else "unknown"


def shelf_agreement(agent: Any) -> dict[str, Any]:
    """Each e-shelf-label driver's current book against what the till charges for one unit
    of each sku (no member, now): the shelf must show the till's price."""
    from edge_agent.pos.shelf import label_targets

    pos = agent.get(Till).pos
    now = agent.clock.now_ms()
    checked, differ = 0, []
    drivers = [d for i in agent.drivers.device_ids() if (d := agent.driver(i)) is not None]
    for drv in label_targets(drivers):
        book = getattr(getattr(drv, "book", None), "book", None)
        for sku, item in (book.items.items() if book is not None else ()):
            basket = Basket(id=f"shelf-check-{sku}", currency=pos.service.store.currency,
                            lines=(Line(line_id="1", sku=sku, qty=1),))
            checked += 1
            try:
                till = pos.service.price_basket(basket, None, now).total
            except PosError as err:  # the till never synced: reported, not raised
                differ.append(f"{drv.device_id}:{sku} label {item.price_minor} till {err}")
                continue
            if till != item.price_minor:
                differ.append(f"{drv.device_id}:{sku} label {item.price_minor} till {till}")
    return {"shelf_prices_checked": checked, "shelf_prices_differ": differ}


def printed_with(folder: Path, text: str) -> bool:
    """Whether a page the printer simulator cut (``receipt-NNNN.txt``) contains ``text``."""
    return any(text in p.read_text(encoding="utf-8", errors="replace")
               for p in sorted(folder.glob("receipt-*.txt")))


async def sales_audit(http: httpx.AsyncClient, store_id: str, *,
                      timeout_s: float = 15.0) -> dict[str, Any]:
    """The cloud's audit of the store's sales (``GET /api/v1/promotions/audit``), once it
    has concluded on every sale it stored (``pending`` 0) or ``timeout_s`` has passed."""
    audit: dict[str, Any] = {}

    async def concluded() -> bool:
        nonlocal audit
        audit = await _ok(await http.get("/api/v1/promotions/audit",
                                         params={"store_id": store_id}), "sales audit")
        return int(audit["pending"]) == 0

    await _poll(concluded, timeout_s=timeout_s, every_s=0.5)
    return audit


async def retail_summary(http: httpx.AsyncClient, demo: RetailDemo, *, store_id: str,
                         sales_in_cloud: int, printer_dir: Path | None,
                         member_vends: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``member_vends``: the ``vend`` events of the demo member the cloud stored (their
    points are in the member's balance)."""
    audit = await sales_audit(http, store_id)
    vends = member_vends or []
    vend_points = sum(int(v.get("totals", {}).get("points_earned", 0)) for v in vends)
    cabinet = (await cabinet_status(http, demo.cabinet_order_id)
               if demo.cabinet_order_id else None)
    if demo.cabinet_order_id and cabinet != ("picked_up", "handed_over"):
        order_id = demo.cabinet_order_id

        async def collected() -> bool:
            return await cabinet_status(http, order_id) == ("picked_up", "handed_over")

        await _poll(collected, timeout_s=15.0, every_s=0.25)
        cabinet = await cabinet_status(http, order_id)
    if demo.order_id and demo.order_steps_done:
        # the store's last step travels through its outbox like any event: wait for it
        order_id, last = demo.order_id, demo.order_steps_done[-1]

        async def arrived() -> bool:
            return await order_status(http, order_id) == last

        await _poll(arrived, timeout_s=15.0, every_s=0.25)
    member: dict[str, Any] = {}
    if demo.member_id:
        member = (await http.get(f"/api/v1/members/{demo.member_id}")).json()
    history: list[str] = []
    status = None
    if demo.order_id:
        got = (await http.get(f"/api/v1/orders/{demo.order_id}")).json()
        status = got.get("status")
        history = [h["to_status"] for h in got.get("history", [])]
    return {
        "till_sales": len(demo.till_sales),
        "sales_in_cloud": sales_in_cloud,
        "sales_refused": demo.refused,
        # the cloud's audit of every sale the store sent (till, carts): re-priced to the
        # same totals, mismatched, or unaudited (it could not re-price them), and sales
        # whose money charged differs from what the sale recorded
        "sales_audited": audit.get("audited"),
        "reprice_mismatches": audit.get("mismatched"),
        "sales_unaudited": audit.get("unaudited"),
        "sales_unaudited_reasons": audit.get("unaudited_reasons"),
        "sales_audit_pending": audit.get("pending"),
        "charged_differs": audit.get("charged_differs"),
        "member_points": member.get("points_balance"),
        "member_points_expected": (WELCOME_POINTS + demo.member_points_earned
                                   - demo.member_points_used + vend_points),
        "lane_sales": len(demo.lane_sales),
        "lane_points_used": demo.member_points_used,
        "lane_code_replays_refused": demo.lane_code_refused,
        "cabinet_pickup_door": demo.cabinet_door,
        "cabinet_pickup_doors_opened": demo.cabinet_doors_opened,
        "cabinet_pickup_second_try_opened": demo.cabinet_second_try,
        "cabinet_pickup_status": list(cabinet) if cabinet else None,
        "cabinet_member_vends": demo.cabinet_member_vends,
        "cabinet_member_vends_in_cloud": len(vends),
        "cabinet_member_vend_discount": sum(int(v.get("totals", {}).get("discount", 0))
                                            for v in vends),
        "cabinet_member_vend_points": vend_points,
        "online_order_store": demo.order_store,
        "online_order_status": status,
        "online_order_history": history,
        "online_order_paid_at_lane": demo.order_sale,
        "pick_ticket_printed": bool(demo.order_id and printer_dir is not None
                                    and printed_with(printer_dir, demo.order_id)),
        "retail_errors": demo.errors,
    }
