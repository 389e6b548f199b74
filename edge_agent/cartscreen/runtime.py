"""In-aisle intelligence on the store box: coupon triggers + the cart-screen server.

The agent's composition root builds one ``InAisle`` and runs it next to its drivers:

    in_aisle = InAisle.build(settings, ctx=driver_context, carts=find_cart_driver)
    await in_aisle.start()          # ledger, code ranges, screen server, trigger task
    ...
    in_aisle.set_rules(rules)       # desired shadow ``trigger_rules`` (rules.RuleSources)
    await in_aisle.stop()

Offline data (``retail_data``, a JSON bundle; ``sample/demo_store.json`` is the demo's):
``catalog`` (``pricing.Catalog``), ``promotions`` (``pricing.PromotionSnapshot``),
``members`` (profiles by id: name, tier, segments, points), ``names_zh``,
``coupon_ranges`` (``CodeRange`` fields), ``trigger_rules``, ``co_occurrence``,
``vision_categories`` (catalog category -> vision category, where they differ). The POS
caches (signed snapshot, price book, ranges) are the production source of the same data;
which trigger rules run is decided in ``rules.py`` (shadow > snapshot > config/bundle).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from edge_agent.cartscreen.backend import CartScreenBackend
from edge_agent.cartscreen.checkout import PricingInputs
from edge_agent.cartscreen.hub import ScreenHub
from edge_agent.cartscreen.i18n import STRINGS
from edge_agent.cartscreen.payment import CONFIRMATIONS, Confirmation
from edge_agent.cartscreen.rules import RuleSources, installed_rules
from edge_agent.cartscreen.seen import SeenInCart
from edge_agent.cartscreen.server import CartScreenServer
from edge_agent.cartscreen.web import create_app
from edge_agent.drivers.capabilities import ScreenSink
from edge_agent.errors import ConfigError
from edge_agent.inference.triggers.engine import TriggerEngine
from edge_agent.inference.triggers.ledger import CodeRange, CouponLedger, IssuedCoupon
from edge_agent.inference.triggers.service import (
    EventSink,
    Locator,
    StaticMembers,
    TriggerService,
)
from edge_agent.inference.triggers.storemap import BeaconLocator, PositionerLocator, StoreMap
from edge_agent.inference.vision.unscanned import Unscanned
from edge_agent.pos.cache import PromotionCache
from edge_agent.pos.sales import PosService
from pricing import Catalog, PromotionSnapshot, Ruleset, compile
from protocols.errors import DecodeError
from protocols.triggers import TriggerRule, parse_rules

if TYPE_CHECKING:
    from edge_agent.kernel.supervisor import Supervisor
logger = logging.getLogger(__name__)

_SNAPSHOT_POLL_S = 5.0  # a version check (an int compare); the till polls every few minutes
SAMPLE_DATA = Path(__file__).with_name("sample") / "demo_store.json"


@dataclass(frozen=True, slots=True)
class InAisleSettings:
    store_id: str
    data_dir: Path
    cartscreen_port: int | None = None  # None: no web server (triggers only)
    cartscreen_host: str = "0.0.0.0"
    store_layout: Path | None = None
    retail_data: Path | None = None
    trigger_rules: tuple[Any, ...] = ()
    utc_offset_min: int = 0
    unscanned_window_s: float = 30.0  # a product seen going in must be scanned by then
    # the store's trained positioning model (ONNX, decision 0009); None: the strongest-
    # beacon fallback (storemap.BeaconLocator)
    positioning_model: Path | None = None
    # who confirms a cart checkout was paid (payment.py): "provider" (a notice signed
    # with payment_secret) or "screen" (the shopper's button: demos and trials only)
    payment_confirmation: Confirmation = "provider"
    payment_secret: str | None = field(default=None, repr=False)


class InAisle:
    def __init__(self, settings: InAisleSettings, *, ctx: EventSink, carts: Callable[[], Any],
                 pos_pricing: PricingInputs | None = None,
                 pos_ranges: Callable[[], list[dict[str, Any]]] | None = None,
                 pos_promotions: PromotionCache | None = None) -> None:
        self.settings = settings
        self.ctx = ctx
        if settings.payment_confirmation not in CONFIRMATIONS:
            raise ConfigError("payment_confirmation", "must be provider or screen")
        if (settings.cartscreen_port is not None and settings.payment_confirmation == "provider"
                and not settings.payment_secret):
            logger.warning("cart checkouts cannot be confirmed: payment_confirmation is "
                           "provider and no payment_secret is set")
        self._pos_pricing = pos_pricing
        self._pos_ranges = pos_ranges
        data = _load_bundle(settings.retail_data)
        try:
            self.catalog: Catalog | None = (Catalog.model_validate(data["catalog"])
                                            if "catalog" in data else None)
            self.snapshot: PromotionSnapshot | None = (
                PromotionSnapshot.model_validate(data["promotions"])
                if "promotions" in data else None)
            self.ranges = [CodeRange(**r) for r in data.get("coupon_ranges", [])]
        except (ValidationError, TypeError, ValueError) as err:
            raise ConfigError("retail_data", f"{settings.retail_data}: {err}") from err
        self.ruleset: Ruleset | None = compile(self.snapshot) if self.snapshot else None
        self.rules = RuleSources(_rules(data.get("trigger_rules", []))
                                 + _rules(list(settings.trigger_rules)))
        self._pos_promotions = pos_promotions
        self.store_map = StoreMap.load(settings.store_layout) if settings.store_layout else None
        self.hub = ScreenHub(clock=ctx.clock, registry=ctx.registry)
        # the till's cloud ranges as they are when a coupon is issued (ledger.py)
        self._till_raw: list[dict[str, Any]] = []
        self._till_ranges: tuple[CodeRange, ...] = ()
        self.ledger = CouponLedger(settings.data_dir / "triggers.db",
                                   cloud_ranges=self._cloud_ranges)
        self.engine = TriggerEngine(self.rules.effective(), utc_offset_min=settings.utc_offset_min)
        members = StaticMembers(data.get("members"))
        self._carts = carts
        self.locator_error: str | None = None  # why a configured positioning model is unused
        self.backend = CartScreenBackend(
            ctx=ctx, store_id=settings.store_id, hub=self.hub, pricing=self._pricing,
            ledger=self.ledger, carts=carts, members=members, store_map=self.store_map,
            names_zh=data.get("names_zh"), co_occurrence=data.get("co_occurrence"),
            utc_offset_min=settings.utc_offset_min,
            payment_confirmation=settings.payment_confirmation,
            payment_secret=settings.payment_secret, rules=self.rules.effective)
        self.triggers = TriggerService(
            ctx, ledger=self.ledger, engine=self.engine, locator=self._locator(), carts=carts,
            members=members, on_coupon=self.backend.on_coupon,
            on_location=self.backend.on_location, send_screen=self._send_native)
        if self.locator_error is not None:
            self.triggers.metrics.bad_input.labels(reason="positioning_model").inc()
        self.seen = SeenInCart(ctx, triggers=self.triggers, carts=carts,
                               catalog=lambda: (got := self.pricing_inputs()) and got[0],
                               window_s=settings.unscanned_window_s,
                               category_map=data.get("vision_categories"),
                               remind=self._remind)
        self.server: CartScreenServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._sweep: asyncio.Task[None] | None = None
        self._follow: asyncio.Task[None] | None = None

    def _locator(self) -> Locator | None:
        """The trained positioner when the store has a model, else the strongest beacon."""
        path = self.settings.positioning_model
        if path is not None:
            # Imported here: numpy and onnxruntime load only where a model is configured.
            from edge_agent.inference.positioning import Positioner, PositioningError, PositionModel

            try:
                model = PositionModel(path)
            except PositioningError as err:  # a broken model: locate by beacon, loudly
                self.locator_error = str(err)
                logger.error("positioning model not used, falling back to the strongest "
                             "beacon: %s", err)
            else:
                if self.store_map is not None:
                    missing = {a.key for a in self.store_map.anchors} - set(model.anchor_ids)
                    if missing:
                        logger.warning("positioning model %s does not know anchors %s",
                                       path, sorted(missing))
                return PositionerLocator(Positioner(model, registry=self.ctx.registry),
                                         self.store_map)
        return BeaconLocator(self.store_map) if self.store_map is not None else None

    def pricing_inputs(self) -> tuple[Catalog, PromotionSnapshot, Ruleset] | None:
        """(catalog, snapshot, compiled rules) the carts price with, screen and sale alike."""
        # the till's verified caches win: the cart must price exactly like the till
        if self._pos_pricing is not None and (pos := self._pos_pricing()) is not None:
            return pos
        if self.catalog is None or self.snapshot is None or self.ruleset is None:
            return None
        return self.catalog, self.snapshot, self.ruleset

    def _pricing(self) -> tuple[Catalog, Ruleset] | None:
        got = self.pricing_inputs()
        return None if got is None else (got[0], got[2])

    def use_till(self, till: PosService) -> None:
        """Record cart checkouts as sales through ``till`` (``checkout.cart_till``)."""
        self.backend.till = till

    @property
    def url(self) -> str | None:
        return self.server.url if self.server is not None else None

    def cart_url(self, cart_id: str) -> str | None:
        return f"{self.url}/cart/{cart_id}" if self.url else None

    async def start(self, tasks: Supervisor | None = None) -> None:
        """Start serving. The loops run as children of ``tasks`` (the agent's supervision
        tree: restarted on a crash); without one (tests), as plain tasks."""
        await self.triggers.start()
        for r in self.ranges:
            await self.ledger.add_range(r, source="bundle")
        if self.settings.cartscreen_port is not None:
            app = create_app(self.backend, registry=self.ctx.registry)
            self.server = CartScreenServer(app, host=self.settings.cartscreen_host,
                                           port=self.settings.cartscreen_port)
            await self.server.start()
        if self._pos_promotions is not None:
            await self.follow_snapshot_once()  # before the first scan: HQ's rules, if any
        loops = {"triggers-scans": self.triggers.run, "vision-unscanned-sweep": self.seen.run}
        if self._pos_promotions is not None:
            loops["triggers-snapshot-rules"] = self._follow_snapshot
        if tasks is not None:
            for name, loop in loops.items():
                tasks.start(name, loop)
            return
        self._task = asyncio.create_task(loops["triggers-scans"](), name="triggers-scans")
        self._sweep = asyncio.create_task(self.seen.run(), name="vision-unscanned-sweep")
        if "triggers-snapshot-rules" in loops:
            self._follow = asyncio.create_task(self._follow_snapshot(),
                                               name="triggers-snapshot-rules")

    def _cloud_ranges(self) -> tuple[CodeRange, ...]:
        """The ranges the till holds now (cloud-allocated, so the till and the cloud know
        every code we issue), read by the ledger at each issue: the first coupon after the
        till receives its allocation comes from it. Converted again only on a change, so
        an unusable range is counted and logged once."""
        raw = self._pos_ranges() if self._pos_ranges is not None else []
        if raw != self._till_raw:
            ranges = []
            for r in raw:
                try:
                    ranges.append(CodeRange(
                        start=int(r["first"]), end=int(r["first"]) + int(r["count"]),
                        prefix=str(r["prefix"]), engine_code=str(r["engine_code"]),
                        expires_ms=int(r["expires_ms"])))
                except (KeyError, TypeError, ValueError) as err:
                    self.triggers.metrics.bad_input.labels(reason="code_range").inc()
                    logger.warning("coupon range %r unusable: %s", r, err)
            self._till_raw, self._till_ranges = list(raw), tuple(ranges)
        return self._till_ranges

    async def stop(self) -> None:
        for task in (self._task, self._sweep, self._follow):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._sweep = self._follow = None
        if self.server is not None:
            await self.server.stop()
            self.server = None
        await self.triggers.aclose()

    def set_rules(self, value: Any) -> None:
        """Desired shadow ``trigger_rules``: validated, then they win over the snapshot's
        and the configured ones (``None`` removes the override; ``rules.RuleSources``)."""
        self.rules.shadow = None if value is None else _rules(value)
        self._apply_rules()

    def _apply_rules(self) -> None:
        self.triggers.set_rules(self.rules.effective())
        logger.info("trigger rules from %s in force", self.rules.source)

    async def follow_snapshot_once(self) -> bool:
        """Take the installed promotion snapshot's rules if its version changed."""
        if self._pos_promotions is None:
            return False
        version = self._pos_promotions.version
        if version is None or version == self.rules.snapshot_version:
            return False
        got = await installed_rules(self._pos_promotions)
        if got is None:
            return False
        self.rules.snapshot_version, self.rules.snapshot = got
        self._apply_rules()
        return True

    async def _follow_snapshot(self) -> None:
        while True:
            await asyncio.sleep(_SNAPSHOT_POLL_S)
            await self.follow_snapshot_once()

    async def _send_native(self, cart_id: str, coupon: IssuedCoupon, rule: TriggerRule) -> None:
        driver = self._carts()
        if not isinstance(driver, ScreenSink):
            return
        await driver.send_screen(cart_id, kind="coupon", title=rule.coupon.title[:80],
                                 body=f"{rule.coupon.body} {coupon.code}".strip()[:500])

    def _remind(self, a: Unscanned) -> None:
        """An item seen going into the cart and not scanned: a prompt on the cart's web
        screen (WebSocket) and on its tablet's native shell (MQTT, in the background)."""
        self.hub.push(a.cart_id, "scan_reminder",
                      {"category": a.category, "pictured": a.pictured, "scanned": a.scanned})
        self.triggers.spawn(self._remind_native(a), f"scan-reminder-{a.cart_id}")

    async def _remind_native(self, a: Unscanned) -> None:
        driver = self._carts()
        if not isinstance(driver, ScreenSink):
            return
        item = STRINGS.get(f"cat_{a.category}", {}).get("en", a.category.replace("_", " "))
        try:
            await driver.send_screen(a.cart_id, kind="alert",
                                     title=STRINGS["scan_reminder_title"]["en"][:80],
                                     body=STRINGS["scan_reminder_body"]["en"]
                                     .replace("{item}", item)[:500])
        except Exception as err:  # refused or unacknowledged: counted by the cart driver
            logger.debug("scan reminder on cart %s's native screen: %s", a.cart_id, err)


def check_rules(value: Any) -> None:
    """Shadow-key validator: raises ``ValueError`` naming the bad field."""
    if value is None:  # removes the store's override
        return
    try:
        parse_rules(value)
    except DecodeError as err:
        raise ValueError(str(err)) from err


def _rules(value: Any) -> tuple[TriggerRule, ...]:
    try:
        return parse_rules(value)
    except DecodeError as err:
        raise ConfigError("trigger_rules", str(err)) from err


def _load_bundle(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError("retail_data", f"cannot read {path}: {err}") from err
    if not isinstance(doc, dict):
        raise ConfigError("retail_data", "must be a JSON object")
    return doc
