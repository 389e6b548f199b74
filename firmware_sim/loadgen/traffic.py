"""What a simulated store sends: events in the formats the real box's code makes them,
and telemetry.

- ``sale``: a basket of 1-5 lines from ``CATALOG``, priced by ``pricing.price`` under the
  store's announced promotion snapshot, with every field the cloud's re-pricing audit
  reads (as ``edge_agent/pos/sales.py`` builds it); only when the store has a snapshot.
- ``vend``: as ``protocols.mdb.vend_event_data`` (id ``vend_event_id``).
- ``coupon_issued``: ``protocols.triggers.CouponIssuedData``.
- ``device_alarm``: ``{"alarm", "active", "family"}`` as the drivers raise and clear them.
- telemetry of a fridge (``Telemetry``, QoS 0), and the agent's outbox report (device
  ``agent``: depth and oldest age, decision 0054)."""

from __future__ import annotations

import random
from typing import Any

from firmware_sim.loadgen.snapshots import CHANNEL, Priced
from pricing import Basket, Catalog, Item, Line, Store, price
from protocols import mdb
from protocols.ids import uuid7
from protocols.messages import Event, Sample, Telemetry
from protocols.triggers import CouponIssuedData

TILL = "pos"  # the device the sales come from, as the agent's till
CABINET = "vend-1"
FRIDGE = "fridge-1"
CART = "cart-1"
DAY_MS = 86_400_000

# A small price book; the sale carries the items it used, as the till does.
_ITEMS = (("milk", "Milk 1l", "dairy", 199), ("bread", "Bread", "bakery", 249),
          ("cola", "Cola 0.5l", "drinks", 159), ("chips", "Chips", "snacks", 219),
          ("apple", "Apples 1kg", "fruit", 299), ("coffee", "Coffee 250g", "grocery", 649))


def catalog(currency: str) -> Catalog:
    return Catalog.of([Item(sku=s, name=n, category=c, price=p) for s, n, c, p in _ITEMS],
                      version=1, currency=currency)


class Traffic:
    """One store's event maker (its own ``seq``; ``rng`` shared or its own)."""

    def __init__(self, store_id: str, *, rng: random.Random) -> None:
        self.store_id = store_id
        self._rng = rng
        self._seq = 0
        self.priced: Priced | None = None  # the store's current promotion snapshot
        self._catalog: Catalog | None = None
        self._alarm_on = False

    @property
    def last_seq(self) -> int:
        """The seq of the last event made (0: none yet)."""
        return self._seq

    def event(self, now_ms: int) -> Event:
        """The next event: mostly sales (when priced), then vends, coupons, alarms."""
        roll = self._rng.random()
        if self.priced is not None and roll < 0.6:
            return self.sale(now_ms)
        if roll < 0.8:
            return self.vend(now_ms)
        if roll < 0.95:
            return self.coupon_issued(now_ms)
        return self.alarm(now_ms)

    def _make(self, kind: str, event_id: str, device_id: str, now_ms: int,
              data: dict[str, Any]) -> Event:
        self._seq += 1
        return Event(id=event_id, kind=kind, store_id=self.store_id, device_id=device_id,
                     seq=self._seq, ts=now_ms, data=data)

    def sale(self, now_ms: int) -> Event:
        assert self.priced is not None
        snapshot, ruleset = self.priced.snapshot, self.priced.ruleset
        if self._catalog is None or self._catalog.currency != snapshot.currency:
            self._catalog = catalog(snapshot.currency)
        skus = self._rng.sample(sorted(self._catalog.items), self._rng.randint(1, 5))
        sale_id = uuid7(now_ms)
        basket = Basket(id=sale_id, currency=snapshot.currency, lines=tuple(
            Line(line_id=str(n), sku=sku, qty=self._rng.randint(1, 3))
            for n, sku in enumerate(skus, start=1)))
        store = Store(id=self.store_id, currency=snapshot.currency)
        priced = price(basket, self._catalog, ruleset, None, now_ms, store)
        used = Catalog(version=self._catalog.version, currency=self._catalog.currency,
                       items={sku: self._catalog.items[sku] for sku in skus})
        totals = {k: getattr(priced, k) for k in ("subtotal", "discount", "total", "paid",
                                                  "points_earned", "points_used",
                                                  "stored_value")}
        data: dict[str, Any] = {
            "member_id": None, "channel": CHANNEL, "till_id": TILL,
            "snapshot_version": snapshot.version, "engine_version": priced.engine_version,
            "ruleset_hash": snapshot.ruleset_hash(), "priced_at": now_ms,
            "basket": basket.model_dump(mode="json"), "catalog": used.model_dump(mode="json"),
            "member": None, "store": store.model_dump(mode="json"), "totals": totals,
            "priced": priced.to_dict(), "offline": False, "points_pending": False,
            "coupons": [], "coupons_used": [], "charged": priced.paid,
        }
        return self._make("sale", sale_id, TILL, now_ms, data)

    def vend(self, now_ms: int) -> Event:
        session = mdb.Session(session_id=uuid7(now_ms), door=self._rng.randint(1, 8),
                              item=self._rng.randint(1, 40), price=150,
                              approved_amount=150, outcome="success", media_id=0)
        data = mdb.vend_event_data(session, device_id=CABINET, item_sku="cola")
        event_id = mdb.vend_event_id(self.store_id, CABINET, str(session.session_id))
        return self._make("vend", event_id, CABINET, now_ms, data)

    def coupon_issued(self, now_ms: int) -> Event:
        issue_id = uuid7(now_ms)
        data = CouponIssuedData(issue_id=issue_id, rule_id="dwell-drinks",
                                code=f"C{issue_id[-8:]}", engine_code="DRINKS10",
                                cart_id=CART, day=now_ms // DAY_MS, issued_ms=now_ms,
                                expires_ms=now_ms + DAY_MS, zone="drinks")
        return self._make("coupon_issued", issue_id, CART, now_ms, data.model_dump())

    def alarm(self, now_ms: int) -> Event:
        self._alarm_on = not self._alarm_on
        return self._make("device_alarm", uuid7(now_ms), FRIDGE, now_ms,
                          {"alarm": "door_open", "active": self._alarm_on,
                           "family": "generic"})

    def telemetry(self, now_ms: int) -> Telemetry:
        temp = round(3.0 + self._rng.random() * 2.0, 2)  # a fridge at 3-5 °C
        return Telemetry(device_id=FRIDGE, device_kind="generic",
                         samples=[Sample(ts=now_ms, values={"temp_c": temp, "door": False})])

    def outbox_report(self, now_ms: int, *, depth: int, oldest_ts: int | None) -> Telemetry:
        age_s = 0.0 if oldest_ts is None else max(0.0, (now_ms - oldest_ts) / 1000)
        return Telemetry(device_id="agent", device_kind="agent",
                         samples=[Sample(ts=now_ms, values={"outbox_depth": depth,
                                                            "outbox_oldest_age_s": age_s})])
