"""Stock kept true by what the stores sell: the ``stock`` rows routing reads.

The ingest hook takes the stores' own events (decision 0067):

===========  ===================================================  ===============
kind         what moves                                           units
===========  ===================================================  ===============
``sale``     ``basket.lines`` (till, lane till and cart sales)    taken
``vend``     ``sku`` of a vend whose ``outcome`` is ``success``   one taken
``refund``   ``refund.lines`` (``pricing.RefundResult``)          put back
===========  ===================================================  ===============

Exactly once per event: a ``stock_moves`` row keyed by (store, event id) is inserted
first (``ON CONFLICT DO NOTHING RETURNING``); a redelivered or re-sent event finds it and
moves nothing. A sku the store has no ``stock`` row for is not sold online and is left
alone, and so is a sku counted after the event happened (``counted_ms`` of the last
``PUT .../stock`` above the event's ``ts``: a store that sold offline and reports late is
already in the count; counted in ``storefleet_stock_stale_units_total``). A sale beyond
the cloud's level (a count that was already stale) floors the level
at 0 and is counted in ``storefleet_stock_short_units_total``: the store sold what it
had, so the cloud's number was wrong, not the sale.

An online order's units were taken at placement (``routing.reserve``), so they are not
taken twice: a ``sale`` that names an ``order_id`` (a lane collecting a pickup order paid
at the store, decision 0069) takes only what it sold beyond the order's lines, and
nothing at all when that is nothing (outcome ``order``); an order this cloud does not
know reserved nothing, so its sale takes every line. Any other event naming an order (a
cabinet handing one out) moves nothing (outcome ``order``). One unit,
one ledger: a vend from a cabinet the cloud keeps by its doors (``cabinets``, decision
0066) is that cabinet's door count's business and moves no store stock (outcome
``cabinet``); any other cabinet is stocked from the store's own goods.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from cloud.db.models_cabinets import Cabinet
from cloud.db.models_orders import Order, StockLevel, StockMove
from cloud.db.writes import dialect_insert
from cloud.orders.metrics import OrderMetrics
from protocols.messages import Event

logger = logging.getLogger(__name__)

KINDS = frozenset({"sale", "refund", "vend"})


class _Line(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sku: Annotated[str, Field(min_length=1, max_length=64)]
    qty: Annotated[int, Field(ge=0, le=10_000_000)]


class _Lines(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    lines: list[_Line] = Field(default_factory=list, max_length=10_000)


class _SaleStock(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    basket: _Lines | None = None


class _RefundStock(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    refund: _Lines | None = None


class _VendStock(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sku: str | None = None
    outcome: str = ""


def moves_of(event: Event, reserved: Mapping[str, int] | None = None) -> dict[str, int]:
    """sku -> signed units the event moves (negative: taken). ``reserved``: the units of
    the order a sale names, taken at placement (not again). Raises ValidationError."""
    out: dict[str, int] = {}
    if event.data.get("order_id") and event.kind != "sale":
        return out  # an online order's goods: reserved when it was placed
    if event.kind == "vend":
        vend = _VendStock.model_validate(event.data)
        if vend.outcome == "success" and vend.sku:
            out[vend.sku] = -1
        return out
    sign, lines = ((-1, _SaleStock.model_validate(event.data).basket) if event.kind == "sale"
                   else (1, _RefundStock.model_validate(event.data).refund))
    for line in lines.lines if lines is not None else ():
        out[line.sku] = out.get(line.sku, 0) + sign * line.qty
    for sku, units in (reserved or {}).items():  # a sale's: out[sku] <= 0
        out[sku] = min(0, out.get(sku, 0) + units)
    return {sku: units for sku, units in out.items() if units}


def reserved_units(session: Session, event: Event) -> dict[str, int] | None:
    """The units of the order a ``sale`` names, reserved when it was placed: {} for a
    sale naming no order, None for an order this cloud does not have at that store (it
    reserved nothing: the sale takes every line)."""
    order_id = event.data.get("order_id")
    if event.kind != "sale" or not order_id:
        return {}
    order = session.get(Order, str(order_id))
    if order is None or order.store_id != event.store_id:
        return None
    units: dict[str, int] = {}
    for line in order.lines:
        units[str(line["sku"])] = units.get(str(line["sku"]), 0) + int(line["qty"])
    return units


def apply_moves(session: Session, event: Event, moves: Mapping[str, int], *,
                now_ms: int) -> tuple[bool, int, int]:
    """Apply ``moves`` once for this event; returns (applied, units short, units already
    in a later count)."""
    first = session.execute(
        dialect_insert(session, StockMove).values(
            store_id=event.store_id, event_id=event.id, kind=event.kind,
            units=sum(moves.values()), applied_ms=now_ms)
        .on_conflict_do_nothing().returning(StockMove.event_id)).first()
    if first is None:
        return False, 0, 0
    short = stale = 0
    for sku, units in sorted(moves.items()):  # sorted: rows locked in one order
        row = session.get(StockLevel, (event.store_id, sku), with_for_update=True)
        if row is None:
            continue  # not sold online at this store
        if row.counted_ms is not None and event.ts < row.counted_ms:
            stale += abs(units)
            continue
        short += max(0, -units - row.qty)
        row.qty = max(0, row.qty + units)
        row.updated_ms = now_ms
    session.flush()
    return True, short, stale


class StockHook:
    """Callable for ``PostCommitHooks.register("stock", KINDS, hook)``."""

    def __init__(self, *, metrics: OrderMetrics) -> None:
        self.metrics = metrics

    def __call__(self, session: Session, event: Event, now_ms: int) -> None:
        try:
            reserved = reserved_units(session, event)
            if reserved is None:
                logger.warning("store %s: sale %s names order %s, which this cloud does "
                               "not have at that store: every line taken", event.store_id,
                               event.id, event.data.get("order_id"))
            moves = moves_of(event, {} if reserved is None else reserved)
        except ValidationError as err:
            self.metrics.stock_moves.labels(kind=event.kind, outcome="bad_payload").inc()
            logger.warning("store %s: %s event %s unusable for stock: %s", event.store_id,
                           event.kind, event.id, err.errors()[0])
            return
        if not moves:
            outcome = "order" if event.data.get("order_id") else "no_lines"
            self.metrics.stock_moves.labels(kind=event.kind, outcome=outcome).inc()
            return
        cabinet = event.data.get("cabinet")
        if event.kind == "vend" and isinstance(cabinet, str) and \
                session.get(Cabinet, (event.store_id, cabinet)) is not None:
            self.metrics.stock_moves.labels(kind=event.kind, outcome="cabinet").inc()
            return
        applied, short, stale = apply_moves(session, event, moves, now_ms=now_ms)
        self.metrics.stock_moves.labels(kind=event.kind,
                                        outcome="applied" if applied else "duplicate").inc()
        if stale:
            self.metrics.stock_stale.inc(stale)
            logger.info("store %s: %s event %s is older than the last stock count: %d "
                        "units left as counted", event.store_id, event.kind, event.id, stale)
        if short:
            self.metrics.stock_short.inc(short)
            logger.warning("store %s: %s event %s sold %d units beyond the cloud's stock "
                           "level (floored at 0)", event.store_id, event.kind, event.id,
                           short)
