"""What the cloud reads from ``sale`` and ``refund`` events (``Event.data``).

A ``sale`` event's data (the POS and the cart produce it; money in minor units)::

    {"member_id": "...",             # optional: a loyalty sale
     "shared_by": "...",             # optional: the distributor the sale is attributed to
     "channel": "pos",               # pos | cart | online
     "snapshot_version": 7,          # promotion snapshot the sale was priced with
     "engine_version": "1.0.0",      # pricing.ENGINE_VERSION of the till
     "ruleset_hash": "...",          # optional: snapshot.ruleset_hash() of that snapshot
     "priced_at": 1767225600000,     # the ``now`` given to price(); default: event ts
     "basket": {...}, "catalog": {...}, "member": {...} | null, "store": {...},
                                     # the pricing inputs (pricing.Basket, Catalog, ...)
     "totals": {"subtotal": .., "discount": .., "total": .., "paid": ..,
                "points_earned": .., "points_used": .., "stored_value": ..},
     "charged": 6280}                # optional: minor units the tenders actually collected
                                     # (card, cash, QR); audited against totals.paid

The cloud audits every sale (``cloud.promotions.reprice``): it re-prices the basket with
the snapshot version named, and compares ``charged`` with ``totals.paid``. A sale without
a basket or snapshot version cannot be re-priced: that is an audit finding too
(``unaudited``), not a sale to skip.

A ``refund`` event's data: ``{"sale_id", "member_id", "points_reversed",
"points_returned", "stored_value", "paid"}`` (from ``pricing.refund``'s ``RefundResult``;
``paid``, the money paid back, prorates commissions; without it a return reverses them
entirely).

Unknown fields are ignored (forward compatible); wrong types are refused and counted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NonNeg = Annotated[int, Field(ge=0)]
Channel = Literal["pos", "cart", "online"]
CHANNELS: tuple[Channel, ...] = ("pos", "cart", "online")
TOTAL_KEYS = ("subtotal", "discount", "total", "paid", "points_earned", "points_used",
              "stored_value")


class SaleTotals(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    subtotal: NonNeg = 0
    discount: NonNeg = 0
    total: NonNeg = 0
    paid: NonNeg = 0
    points_earned: NonNeg = 0
    points_used: NonNeg = 0
    stored_value: NonNeg = 0


class SaleData(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    member_id: str | None = None
    shared_by: str | None = None
    channel: Channel = "pos"
    snapshot_version: NonNeg | None = None
    engine_version: str | None = None
    ruleset_hash: str | None = None
    priced_at: NonNeg | None = None
    basket: dict[str, Any] | None = None
    catalog: dict[str, Any] | None = None
    member: dict[str, Any] | None = None
    store: dict[str, Any] | None = None
    totals: SaleTotals = SaleTotals()
    charged: NonNeg | None = None
    """What the tenders collected; differing from ``totals.paid`` is an audit finding."""
    spends: dict[Literal["points", "stored_value"], str] = {}
    """Spends the store's members module had authorised for this sale (unit -> spend
    id, decision 0064): taken then, by the cloud or settled from a ``member_spend``
    event, so the sale's ``points_used`` is not taken again."""


class RefundData(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sale_id: str
    member_id: str | None = None
    points_reversed: NonNeg = 0
    points_returned: NonNeg = 0
    stored_value: NonNeg = 0
    paid: NonNeg | None = None
