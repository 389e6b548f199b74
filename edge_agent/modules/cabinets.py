"""Codes at the store's vending cabinets (``[cabinets]``, decision 0066): online orders
collected from a door with a signed pickup code, and members' vends priced and earning.

    [cabinets]
    trusted_keys = ["<base64>"]   # the cloud's signing keys; default: [content]'s
    promotions_file = "/etc/storefleet/cabinet-promotions.json"  # a PromotionSnapshot
    currency = "EUR"
    expiry_check_s = 30           # how often held pickups are checked for expiry

Pickups come from the cloud on ``cmd/pickups`` (``protocols.pickup.PickupDispatch``) and
are kept in ``<data_dir>/cabinets/pickups.json`` (temporary file, fsync, rename; off the
loop) before anything is reported, so a restart keeps them and a redelivered dispatch is
one pickup. The box reports ``ready`` on receipt, ``picked_up`` when the door was read
back open, ``expired`` when the code's time ran out, as ``cabinet_pickup`` events through
the outbox (ids ``pickup-<order>-<status>``: sent again at start, taken once).

The vending driver hands every code entered at a cabinet to this module (the
``CabinetDesk`` it attaches itself to, ``drivers/vending/desk.py``). A pickup code is
checked here, with the cloud away as well: form, the pickup held, the cloud's Ed25519
signature, expiry, cabinet (``protocols.pickup.check_code``), then whether it was used.
It is claimed (written to disk) before the door is unlocked, so a second scan, or the
same code at the same moment, is ``used``; a door that did not open gives the claim
back. A member code goes to the ``members`` module (``lookup``: signature, replay,
snapshot), and the cabinet's next vend is the member's: priced by ``pricing.price`` with
the cabinet's promotions (near-expiry markdowns by the door's best-before, points) and
reported with the sale's fields, which earn the member's points in the cloud. Every
refusal is counted in ``storefleet_cabinet_codes_total{kind,result}`` and logged.

A pickup left ``claimed`` (the unlock's answer never came, or the box stopped between
the claim and the door's read-back) opens nothing more until staff look at the door and
say what they found: agent command ``pickup_resolve {order_id, opened}`` (opened: it is
``picked_up`` and reported; not: the code works again). Claims found at start are
logged and counted (``claimed_at_start``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_agent.commands import CommandRefused, CommandSpec
from edge_agent.drivers.capabilities import CODE_CABINET
from edge_agent.drivers.vending.desk import (
    CodeAnswer,
    CodeRefused,
    MemberHere,
    OpenDoor,
    PricedVend,
    VendItem,
)
from edge_agent.fsutil import write_atomically
from edge_agent.kernel.module import Module, ModuleSettings, PayloadHandler
from edge_agent.metrics import registry_scoped
from edge_agent.modules.content import Content
from edge_agent.modules.members import MemberRefused, Members
from edge_agent.modules.till import Till
from pricing import Basket, Catalog, Item, Line, Member, PromotionSnapshot, Store, compile
from pricing import price as price_basket
from pricing.ruleset import Ruleset
from protocols import pickup
from protocols.codec import decode
from protocols.errors import DecodeError, StorefleetError
from protocols.ids import Id
from protocols.signed import load_public_keys

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from prometheus_client import CollectorRegistry

    from edge_agent.kernel.module import Kernel
    from edge_agent.kernel.supervisor import Supervisor

logger = logging.getLogger(__name__)

PICKUPS = "pickups.json"
KEEP_DONE_MS = 7 * 86_400_000  # collected or expired pickups are kept a week, then dropped
OPEN = ("ready", "claimed")  # the door is held for the order


class CabinetsSettings(ModuleSettings):
    trusted_keys: tuple[str, ...] = ()
    promotions_file: Path | None = None
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    expiry_check_s: float = Field(default=30.0, gt=0, le=3600)


class ResolveArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: Id
    opened: bool  # what staff found at the door: the goods gone, or still there


class CabinetsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.codes = Counter(
            "storefleet_cabinet_codes", "Codes entered at cabinets by kind (pickup, member, "
            "other) and result (opened, member, or why not)", ["kind", "result"],
            registry=registry)
        self.pickups = Counter(
            "storefleet_cabinet_pickups", "Pickups at the box by what happened (new, "
            "duplicate, bad_payload, wrong_store, ready, picked_up, expired, jammed, "
            "event_failed, unreadable, claimed_at_start, resolved)", ["result"],
            registry=registry)


@dataclass(frozen=True, slots=True)
class HeldPickup:
    order_id: str
    cabinet_id: str
    door: int
    expires_ms: int
    member_id: str | None
    status: str  # ready | claimed | picked_up | expired
    updated_ms: int


class Cabinets(Module):
    name = "cabinets"
    Settings = CabinetsSettings
    default_on: ClassVar[bool] = False
    after = ("content", "members", "till")

    def __init__(self, kernel: Kernel, settings: CabinetsSettings) -> None:
        super().__init__(kernel, settings)
        self.metrics = registry_scoped(kernel.registry, "cabinets", CabinetsMetrics)
        self.root = kernel.data_dir / "cabinets"
        content = kernel.module("content")
        members = kernel.module("members")
        self.members = members if isinstance(members, Members) else None
        self.keys: Mapping[str, Ed25519PublicKey] = load_public_keys(settings.trusted_keys)
        if not self.keys and isinstance(content, Content):
            self.keys = content.keys  # the key of the manifests signs the pickup codes
        self.pickups: dict[str, HeldPickup] = {}
        self.promotions: tuple[PromotionSnapshot, Ruleset] | None = None
        self._write_lock = asyncio.Lock()

    # ---- lifetime ---------------------------------------------------------------------

    async def open(self) -> None:
        self.pickups = await asyncio.to_thread(self._load)
        path = self.settings.promotions_file
        if path is not None:  # a small JSON file, read once at start: off the loop anyway
            text = await asyncio.to_thread(path.read_text, encoding="utf-8")
            snapshot = PromotionSnapshot.model_validate_json(text)
            self.promotions = (snapshot, compile(snapshot))

    async def start(self, tasks: Supervisor) -> None:
        if not self.keys:  # member codes still work; no pickup code can be checked
            logger.error("cabinets: no trusted keys ([cabinets] or [content] trusted_keys): "
                         "every pickup code will be refused as forged")
        self._attach()
        for held in list(self.pickups.values()):  # a crash may have come before the outbox
            if held.status in ("ready", "picked_up", "expired"):
                await self._report(held, held.status)
            elif held.status == "claimed":
                self.metrics.pickups.labels(result="claimed_at_start").inc()
                logger.warning("pickup %s was being opened (cabinet %s door %d) when the box "
                               "stopped: it opens nothing until staff resolve it "
                               "(pickup_resolve)", held.order_id, held.cabinet_id, held.door)
        tasks.start("cabinets-expiry", self._expire_forever)

    async def stop(self) -> None:
        for cabinet in self.kernel.drivers.find(CODE_CABINET):
            cabinet.attach_desk(None)

    def diagnostics(self) -> dict[str, Any]:
        by: dict[str, int] = {}
        for held in self.pickups.values():
            by[held.status] = by.get(held.status, 0) + 1
        return {"pickups": by, "trusted_keys": len(self.keys),
                "promotions": self.promotions[0].version if self.promotions else None}

    def commands(self) -> Mapping[str, CommandSpec[Any]]:
        return {"pickup_resolve": CommandSpec(ResolveArgs, self._resolve)}

    async def _resolve(self, args: ResolveArgs) -> dict[str, Any]:
        entry = self.pickups.get(args.order_id)
        if entry is None or entry.status != "claimed":
            raise CommandRefused(f"pickup {args.order_id} is "
                                 f"{entry.status if entry else 'unknown'}, not claimed")
        await self.door_result(entry.cabinet_id, entry.order_id, opened=args.opened)
        self.metrics.pickups.labels(result="resolved").inc()
        return {"order_id": entry.order_id, "status": self.pickups[entry.order_id].status}

    def command_targets(self) -> Mapping[str, PayloadHandler]:
        return {pickup.TARGET: self.handle_dispatch}

    def _attach(self) -> None:
        """Be the desk of every cabinet; again on each round, for drivers started later."""
        for cabinet in self.kernel.drivers.find(CODE_CABINET):
            cabinet.attach_desk(self)

    async def _expire_forever(self) -> None:
        while True:
            self._attach()
            await self.expire_due()
            await asyncio.sleep(self.settings.expiry_check_s)

    # ---- pickups from the cloud -------------------------------------------------------

    async def handle_dispatch(self, payload: bytes) -> None:
        try:
            msg = decode(payload, pickup.PickupDispatch)
        except DecodeError as err:
            self.metrics.pickups.labels(result="bad_payload").inc()
            logger.warning("pickup dispatch refused: %s", err)
            return
        if msg.store_id != self.kernel.store_id:
            self.metrics.pickups.labels(result="wrong_store").inc()
            logger.warning("pickup %s is for store %s, not %s", msg.order_id, msg.store_id,
                           self.kernel.store_id)
            return
        if msg.order_id in self.pickups:
            self.metrics.pickups.labels(result="duplicate").inc()
            return
        held = HeldPickup(order_id=msg.order_id, cabinet_id=msg.cabinet_id, door=msg.door,
                          expires_ms=msg.expires_ms, member_id=msg.member_id, status="ready",
                          updated_ms=self.kernel.clock.now_ms())
        await self._set(held)
        self.metrics.pickups.labels(result="new").inc()
        logger.info("pickup %s held in cabinet %s door %d", msg.order_id, msg.cabinet_id,
                    msg.door)
        await self._report(held, "ready")
        await self.expire_due()  # it may have waited at the broker past its time

    async def expire_due(self) -> None:
        now = self.kernel.clock.now_ms()
        for held in list(self.pickups.values()):
            if held.status == "ready" and now >= held.expires_ms:
                held = replace(held, status="expired", updated_ms=now)
                await self._set(held)
                logger.info("pickup %s expired in cabinet %s door %d", held.order_id,
                            held.cabinet_id, held.door)
                await self._report(held, "expired")

    # ---- the desk the cabinets ask (drivers/vending/desk.py) --------------------------

    def held(self, cabinet_id: str, door: int) -> bool:
        return any(h.cabinet_id == cabinet_id and h.door == door and h.status in OPEN
                   for h in self.pickups.values())

    async def code_entered(self, cabinet_id: str, code: str) -> CodeAnswer:
        if code.startswith(pickup.PREFIX + "."):
            return await self._pickup_code(cabinet_id, code)
        if code.startswith("SFM"):
            return await self._member_code(cabinet_id, code)
        return self._refuse("other", "malformed", cabinet_id, "neither a pickup nor a "
                            "member code")

    async def _pickup_code(self, cabinet_id: str, code: str) -> CodeAnswer:
        held = {h.order_id: pickup.Reservation(self.kernel.store_id, h.cabinet_id, h.door,
                                               h.order_id, h.expires_ms)
                for h in self.pickups.values()}
        try:
            found = pickup.check_code(code, held, keys=self.keys, cabinet_id=cabinet_id,
                                      now_ms=self.kernel.clock.now_ms())
        except pickup.PickupRefused as err:
            return self._refuse("pickup", err.reason, cabinet_id, err.detail)
        entry = self.pickups[found.order_id]
        if entry.status != "ready":
            reason = "expired" if entry.status == "expired" else "used"
            return self._refuse("pickup", reason, cabinet_id,
                                f"order {entry.order_id} is {entry.status}")
        # claimed in memory before the first await: a second scan meanwhile is "used"
        await self._set(replace(entry, status="claimed",
                                updated_ms=self.kernel.clock.now_ms()))
        self.metrics.codes.labels(kind="pickup", result="accepted").inc()
        return OpenDoor(door=entry.door, order_id=entry.order_id)

    async def door_result(self, cabinet_id: str, order_id: str, *, opened: bool) -> None:
        entry = self.pickups.get(order_id)
        if entry is None or entry.status != "claimed":
            return
        now = self.kernel.clock.now_ms()
        if not opened:  # jammed, or a customer mid-vend: the code may be tried again
            await self._set(replace(entry, status="ready", updated_ms=now))
            self.metrics.pickups.labels(result="jammed").inc()
            logger.warning("pickup %s: cabinet %s door %d did not open; the code stays valid",
                           order_id, cabinet_id, entry.door)
            return
        done = replace(entry, status="picked_up", updated_ms=now)
        await self._set(done)
        logger.info("pickup %s collected from cabinet %s door %d", order_id, cabinet_id,
                    entry.door)
        await self._report(done, "picked_up")

    async def _member_code(self, cabinet_id: str, code: str) -> CodeAnswer:
        if self.members is None:
            return self._refuse("member", "no_members", cabinet_id, "[members] is not on")
        try:
            view = await self.members.lookup(code=code)
        except MemberRefused as err:  # counted and logged by the members module too
            return self._refuse("member", err.reason, cabinet_id, err.detail)
        self.metrics.codes.labels(kind="member", result="accepted").inc()
        return MemberHere(Member(id=view.member_id, tier=view.tier,
                                 currency=self.settings.currency,
                                 points_balance=max(0, view.points),
                                 stored_value_balance=max(0, view.stored_value)))

    def _refuse(self, kind: str, reason: str, cabinet_id: str, detail: str) -> CodeRefused:
        self.metrics.codes.labels(kind=kind, result=reason).inc()
        logger.warning("store %s cabinet %s: %s code refused (%s): %s", self.kernel.store_id,
                       cabinet_id, kind, reason, detail)
        return CodeRefused(reason)

    def price_vend(self, cabinet_id: str, item: VendItem,
                   member: Member | None) -> PricedVend | None:
        """The vend priced by the one engine with the cabinet's promotions; None (the
        planogram's price) when the cabinet has none or the engine refuses the item."""
        promotions = self.promotions or self._till_promotions()
        if promotions is None:
            return None
        snapshot, ruleset = promotions
        cur, now = self.settings.currency, self.kernel.clock.now_ms()
        sku = item.sku or f"item-{item.item}"
        catalog = Catalog(version=0, currency=cur,
                          items={sku: Item(sku=sku, price=item.price)})
        basket = Basket(id=f"{cabinet_id}-door-{item.door}", currency=cur, lines=(
            Line(line_id=f"door-{item.door}", sku=sku, qty=1,
                 best_before_ms=item.best_before_ms),))
        store = Store(id=self.kernel.store_id, currency=cur)
        try:
            priced = price_basket(basket, catalog, ruleset, member, now, store)
        except StorefleetError as err:
            self.metrics.codes.labels(kind="vend", result="pricing_error").inc()
            logger.error("cabinet %s door %d: pricing refused (%s); list price taken",
                         cabinet_id, item.door, err)
            return None
        totals = {k: getattr(priced, k) for k in ("subtotal", "discount", "total", "paid",
                                                  "points_earned", "points_used",
                                                  "stored_value")}
        sale = {"member_id": member.id if member else None,
                "snapshot_version": snapshot.version, "engine_version": priced.engine_version,
                "ruleset_hash": snapshot.ruleset_hash(), "priced_at": now,
                "basket": basket.model_dump(mode="json"),
                "catalog": catalog.model_dump(mode="json"),
                "member": member.model_dump(mode="json") if member else None,
                "store": store.model_dump(mode="json"), "totals": totals,
                "lines": [{"sku": ln.sku, "qty": ln.qty, "unit_price": ln.unit_price,
                           "net": ln.net, "paid": ln.paid, "points_earned": ln.points_earned}
                          for ln in priced.lines],
                "applied": [a.promotion_id for a in priced.applied], "charged": priced.paid}
        return PricedVend(price=priced.paid, sale=sale)

    def _till_promotions(self) -> tuple[PromotionSnapshot, Ruleset] | None:
        """The till's signed promotion snapshot, when the box runs a till that has one."""
        till = self.kernel.module("till")
        return till.pos.promotions.ruleset("pos") if isinstance(till, Till) else None

    # ---- keeping pickups --------------------------------------------------------------

    async def _report(self, held: HeldPickup, status: str) -> None:
        data = pickup.PickupStatusData(order_id=held.order_id, cabinet_id=held.cabinet_id,
                                       door=held.door, status=status,  # type: ignore[arg-type]
                                       ts=held.updated_ms)
        try:
            await self.kernel.sink.emit_event(pickup.KIND, device_id=held.cabinet_id,
                                              data=data.model_dump(mode="json"),
                                              event_id=pickup.event_id(held.order_id, status))
        except StorefleetError:  # kept in pickups.json: reported again at the next start
            self.metrics.pickups.labels(result="event_failed").inc()
            logger.exception("cabinets: %s of pickup %s not stored in the outbox", status,
                             held.order_id)
            return
        self.metrics.pickups.labels(result=status).inc()

    async def _set(self, held: HeldPickup) -> None:
        now = self.kernel.clock.now_ms()
        self.pickups[held.order_id] = held
        self.pickups = {k: h for k, h in self.pickups.items()
                        if h.status in OPEN or h.updated_ms > now - KEEP_DONE_MS}
        async with self._write_lock:
            data = json.dumps([asdict(h) for h in self.pickups.values()]).encode()
            await asyncio.to_thread(self._save, data)  # a write and fsync: off the loop

    def _save(self, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomically(self.root / PICKUPS, data)

    def _load(self) -> dict[str, HeldPickup]:
        try:
            rows = json.loads((self.root / PICKUPS).read_text(encoding="utf-8"))
            return {row["order_id"]: HeldPickup(**row) for row in rows}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, ValidationError) as err:
            self.metrics.pickups.labels(result="unreadable").inc()
            logger.error("cabinets: %s unreadable, held pickups lost: %s",
                         self.root / PICKUPS, err)
            return {}


MODULE = Cabinets
