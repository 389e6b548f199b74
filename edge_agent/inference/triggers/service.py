"""The coupon-trigger service: cart scan reports and camera categories in, coupons out.

    service = TriggerService(ctx, ledger=CouponLedger(path), engine=TriggerEngine(rules),
                             locator=BeaconLocator(store_map), carts=lambda: agent.driver("carts"),
                             on_coupon=hub.coupon)
    await service.start()            # opens the ledger, restores caps, re-emits stragglers
    task = asyncio.create_task(service.run(), name="triggers")

Per scan report (all on the event loop, no cloud round trip):
locate the cart (zone, shelf) -> ``engine.observe_position`` -> for each decision: take a
code from the pre-allocated ranges and record the issue (one SQLite commit, the coupon
is durable) -> push it to the cart screen (``on_coupon``: the WebSocket hub) -> commit
the ``coupon_issued`` event to the outbox (event id = issue id: idempotent) -> send it
to the tablet's native shell over MQTT (``send_screen``, in the background: the trigger
path never waits for a tablet's ack).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

from edge_agent.drivers.capabilities import CartFleet
from edge_agent.errors import AgentError
from edge_agent.inference.triggers.engine import Decision, Shopper, TriggerEngine, who_of
from edge_agent.inference.triggers.errors import NoCodesLeft, TriggerError
from edge_agent.inference.triggers.ledger import CouponLedger, IssuedCoupon
from edge_agent.inference.triggers.storemap import Location
from protocols.triggers import CouponIssuedData, TriggerRule

logger = logging.getLogger(__name__)

_RESUBSCRIBE_S = 1.0  # how often a missing / replaced cart driver is looked for again
SCAN_BACKLOG = 1024  # scan reports held for the trigger loop; beyond, the oldest go (counted)
# reports judged in a row before the loop lets other tasks run: ~1-2 ms of work at
# ~50 us a report, short next to the 50 ms the trigger path is allowed
_YIELD_EVERY = 32


class EventSink(Protocol):
    clock: Any
    registry: CollectorRegistry

    async def emit_event(self, kind: str, *, device_id: str, data: Mapping[str, Any],
                         event_id: str | None = None) -> str: ...


class Locator(Protocol):
    """``t``: seconds (the agent's clock) of the scan, for locators that track each cart."""

    def locate(self, readings: list[tuple[str, int]], *, cart_id: str,
               t: float) -> Location | None: ...


@dataclass(frozen=True, slots=True)
class MemberProfile:
    member_id: str
    name: str = ""
    tier: str | None = None
    segments: frozenset[str] = frozenset()
    points: int = 0


class Members(Protocol):
    def get(self, member_id: str) -> MemberProfile | None: ...


class StaticMembers:
    """Member profiles from the cached member snapshot (a dict by id)."""

    def __init__(self, doc: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._by_id = {
            mid: MemberProfile(member_id=mid, name=str(m.get("name", "")), tier=m.get("tier"),
                               segments=frozenset(m.get("segments", ())),
                               points=int(m.get("points", 0)))
            for mid, m in (doc or {}).items()
        }

    def get(self, member_id: str) -> MemberProfile | None:
        return self._by_id.get(member_id)


CouponCallback = Callable[[str, IssuedCoupon, TriggerRule], None]
ScreenSender = Callable[[str, IssuedCoupon, TriggerRule], Awaitable[None]]


class TriggerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.observations = Counter("storefleet_trigger_observations",
                                    "positions and categories judged", ["kind"],
                                    registry=registry)
        self.issued = Counter("storefleet_trigger_coupons_issued",
                              "coupons issued by trigger rules", ["rule"], registry=registry)
        self.failed = Counter("storefleet_trigger_issue_failures",
                              "decisions that could not be issued", ["reason"],
                              registry=registry)
        self.bad_input = Counter("storefleet_trigger_bad_input",
                                 "observations refused (unknown beacons only, bad ids)",
                                 ["reason"], registry=registry)
        self.latency = Histogram("storefleet_trigger_issue_seconds",
                                 "scan report taken -> coupon pushed to the screen",
                                 buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
                                 registry=registry)
        # the children counted on every scan report, looked up once: ``labels()`` takes
        # a lock and builds a key each call, a measurable share of a ~20 us report
        self.positions = self.observations.labels(kind="position")
        self.unlocatable = self.bad_input.labels(reason="unlocatable")


class TriggerService:
    def __init__(self, ctx: EventSink, *, ledger: CouponLedger, engine: TriggerEngine,
                 locator: Locator | None, carts: Callable[[], Any] | None = None,
                 members: Members | None = None, on_coupon: CouponCallback | None = None,
                 on_location: Callable[[str, Location], None] | None = None,
                 send_screen: ScreenSender | None = None) -> None:
        self.ctx = ctx
        self.ledger = ledger
        self.engine = engine
        self.locator = locator
        self._carts = carts
        self.members = members or StaticMembers()
        self.on_coupon = on_coupon
        self.on_location = on_location
        self.send_screen = send_screen
        self.metrics = TriggerMetrics(ctx.registry)
        self.locations: dict[str, Location] = {}
        self.issued_total = 0
        self._background: set[asyncio.Task[None]] = set()

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the ledger, count today's issues against the caps, re-emit stragglers."""
        await self.ledger.open()
        today = self.engine.day_of(self.ctx.clock.now_ms())
        for c in await self.ledger.of_day(today - 1):
            self.engine.restore(rule_id=c.rule_id, who=c.who, day=c.day, cart_id=c.cart_id,
                                ts_ms=c.issued_ms)
        for c in await self.ledger.not_evented():
            await self._emit(c, zone=None, shelf=None)

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.ledger.close()

    def set_rules(self, rules: tuple[TriggerRule, ...]) -> None:
        self.engine.load(rules)
        logger.info("trigger rules loaded: %d", len(rules))

    async def run(self) -> None:
        """Follow the cart driver's scan reports until cancelled (survives driver restarts)."""
        while True:
            driver = self._carts() if self._carts is not None else None
            if not isinstance(driver, CartFleet):
                await asyncio.sleep(_RESUBSCRIBE_S)
                continue
            # ~0.7 s of 300 carts at 5 Hz: an older position triggers nothing useful,
            # and each report held costs ~4 KB (4,096 of them were 16 MB, decision 0059)
            sub = driver.subscribe_scans(maxsize=SCAN_BACKLOG)
            try:
                while self._carts is not None and self._carts() is driver:
                    try:
                        # One timer a second, not one per report (decision 0020): when it
                        # fires, the loop checks that its driver is still the agent's.
                        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                        # cancellation that lands as the queue hands over an item.
                        async with asyncio.timeout(_RESUBSCRIBE_S):
                            await self._follow(sub.queue)
                    except TimeoutError:
                        continue
            finally:
                sub.close()

    async def _follow(self, queue: asyncio.Queue[Any]) -> None:
        """Judge scan reports as they come, until cancelled. A report is only ever in
        hand between two awaits, so a cancellation never drops one."""
        in_a_row = 0
        while True:
            if queue.empty():
                in_a_row = 0  # the get below waits: the other tasks run
            elif in_a_row >= _YIELD_EVERY:
                # a backlog is worked off in slices, so the screens' sockets and the
                # coupon issues waiting behind it keep moving
                in_a_row = 0
                await asyncio.sleep(0)
            report = await queue.get()  # at once when one is waiting
            in_a_row += 1
            started = self.ctx.clock.monotonic()
            decisions = self.observe_scan(
                report.cart_id, session_id=report.session_id, member_id=report.member_id,
                readings=[(r.beacon, r.rssi) for r in report.scan.readings])
            # Issuing waits for a SQLite commit (an fsync): it runs beside the scan loop,
            # so one cart's coupon never holds up every other cart's reports. The engine
            # has already counted the decision, so caps hold meanwhile.
            for decision in decisions:
                self.spawn(self._issue_timed(decision, started),
                           f"trigger-issue-{decision.issue_id}")

    # ---- observations ---------------------------------------------------------------------

    def shopper(self, session_id: str | None, member_id: str | None) -> Shopper:
        profile = self.members.get(member_id) if member_id else None
        return Shopper(session_id=session_id, member_id=member_id,
                       tier=profile.tier if profile else None,
                       segments=profile.segments if profile else frozenset())

    async def handle_scan(self, cart_id: str, *, session_id: str | None, member_id: str | None,
                          readings: list[tuple[str, int]],
                          location: Location | None = None) -> list[IssuedCoupon]:
        """Judge one scan report and issue what fires (awaiting the issues)."""
        started = self.ctx.clock.monotonic()
        decisions = self.observe_scan(cart_id, session_id=session_id, member_id=member_id,
                                      readings=readings, location=location)
        return await self._issue_all(decisions, started)

    def observe_scan(self, cart_id: str, *, session_id: str | None, member_id: str | None,
                     readings: list[tuple[str, int]],
                     location: Location | None = None) -> list[Decision]:
        """The synchronous part: locate, move the screen's dot, ask the engine."""
        if location is None and self.locator is not None:
            location = self.locator.locate(readings, cart_id=cart_id,
                                           t=self.ctx.clock.now_ms() / 1000)
        if location is None:
            self.metrics.unlocatable.inc()
            return []
        self.metrics.positions.inc()
        self.locations[cart_id] = location
        if self.on_location is not None:
            self.on_location(cart_id, location)
        return self.engine.observe_position(
            cart_id, zone=location.zone, shelf=location.shelf, ts_ms=self.ctx.clock.now_ms(),
            shopper=self.shopper(session_id, member_id))

    async def handle_category(self, cart_id: str, *, category: str) -> list[IssuedCoupon]:
        """A ``CategorySeen`` from the vision pipeline (source = the cart)."""
        started = self.ctx.clock.monotonic()
        self.metrics.observations.labels(kind="category").inc()
        decisions = self.engine.observe_category(cart_id, category=category,
                                                 ts_ms=self.ctx.clock.now_ms())
        return await self._issue_all(decisions, started)

    def session_ended(self, cart_id: str) -> None:
        self.engine.forget(cart_id)
        self.locations.pop(cart_id, None)
        if (forget := getattr(self.locator, "forget", None)) is not None:
            forget(cart_id)  # a tracking locator drops the cart's filter

    # ---- issuing ----------------------------------------------------------------------------

    async def _issue_all(self, decisions: list[Decision], started: float) -> list[IssuedCoupon]:
        out = []
        for decision in decisions:
            coupon = await self._issue(decision)
            if coupon is not None:
                out.append(coupon)
                self.metrics.latency.observe(self.ctx.clock.monotonic() - started)
        return out

    async def _issue_timed(self, d: Decision, started: float) -> None:
        if await self._issue(d) is not None:
            self.metrics.latency.observe(self.ctx.clock.monotonic() - started)

    def spawn(self, coro: Any, name: str) -> None:
        """Run ``coro`` in the background; cancelled by ``aclose``."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _issue(self, d: Decision) -> IssuedCoupon | None:
        rule = d.rule
        try:
            coupon, new = await self.ledger.issue(
                issue_id=d.issue_id, engine_code=rule.coupon.engine_code, rule_id=rule.id,
                who=who_of(d.shopper, d.cart_id), day=d.day, cart_id=d.cart_id,
                session_id=d.shopper.session_id, member_id=d.shopper.member_id,
                issued_ms=d.ts_ms, expires_ms=d.ts_ms + rule.coupon.valid_for_ms)
        except (TriggerError, AgentError) as err:
            self.engine.release(d)
            reason = "no_codes" if isinstance(err, NoCodesLeft) else "storage"
            self.metrics.failed.labels(reason=reason).inc()
            logger.warning("trigger %s for cart %s not issued: %s", rule.id, d.cart_id, err)
            return None
        if not new:
            return None  # issued before (a restart replayed the same situation)
        self.issued_total += 1
        self.metrics.issued.labels(rule=rule.id).inc()
        if self.on_coupon is not None:
            try:
                self.on_coupon(d.cart_id, coupon, rule)
            except Exception:  # a screen bug must not stop issuing; counted and logged
                self.metrics.failed.labels(reason="screen_push").inc()
                logger.exception("cart screen push failed for %s", coupon.code)
        if self.send_screen is not None:
            self.spawn(self._send_native(d.cart_id, coupon, rule),
                        f"trigger-screen-{coupon.issue_id}")
        await self._emit(coupon, zone=d.zone, shelf=d.shelf)
        return coupon

    async def _emit(self, c: IssuedCoupon, *, zone: str | None, shelf: str | None) -> None:
        data = CouponIssuedData(issue_id=c.issue_id, rule_id=c.rule_id, code=c.code,
                                engine_code=c.engine_code, cart_id=c.cart_id,
                                session_id=c.session_id, member_id=c.member_id, zone=zone,
                                shelf=shelf, day=c.day, issued_ms=c.issued_ms,
                                expires_ms=c.expires_ms)
        try:
            await self.ctx.emit_event("coupon_issued", device_id=c.cart_id,
                                      data=data.model_dump(), event_id=c.issue_id)
            await self.ledger.mark_evented(c.issue_id)
        except Exception as err:
            self.metrics.failed.labels(reason="event").inc()
            logger.error("coupon_issued %s not in the outbox yet: %s", c.issue_id, err)

    async def _send_native(self, cart_id: str, coupon: IssuedCoupon, rule: TriggerRule) -> None:
        assert self.send_screen is not None
        try:
            await self.send_screen(cart_id, coupon, rule)
        except Exception as err:
            self.metrics.failed.labels(reason="native_screen").inc()
            logger.debug("native screen for %s: %s", cart_id, err)
