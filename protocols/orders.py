"""Online orders between the cloud and a store box (docs/architecture.md#an-online-order).

Downlink: the cloud publishes an ``OrderDispatch`` on ``sf/v1/{store_id}/cmd/orders``
(``topics.orders``; QoS 1, not retained). The ``cmd/#`` read permission every store
already has covers it, so no broker ACL changes; ``orders`` is a reserved command
target (no device may be called that).

Uplink: the store reports every transition as an ``order_status`` event through its
durable outbox; ``Event.data`` is an ``OrderStatusData``.

The state machine lives here, so that store and cloud refuse the same transitions::

    placed -> accepted -> picking -> ready -> handed_over            (pickup)
                                           -> out_for_delivery -> delivered (delivery)
    any state before handed_over / delivered -> cancelled

``placed`` is the cloud's own state (routed, published, not yet accepted by the store).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from protocols.ids import Id
from protocols.messages import EpochMs, Msg

Fulfilment = Literal["pickup", "delivery"]
OrderState = Literal[
    "placed", "accepted", "picking", "ready", "handed_over", "out_for_delivery",
    "delivered", "cancelled",
]
ORDER_STATES: tuple[OrderState, ...] = (
    "placed", "accepted", "picking", "ready", "handed_over", "out_for_delivery",
    "delivered", "cancelled",
)
FINAL_STATES: frozenset[str] = frozenset({"handed_over", "delivered", "cancelled"})

_COMMON: dict[str, frozenset[str]] = {
    "placed": frozenset({"accepted", "cancelled"}),
    "accepted": frozenset({"picking", "cancelled"}),
    "picking": frozenset({"ready", "cancelled"}),
}
TRANSITIONS: dict[Fulfilment, dict[str, frozenset[str]]] = {
    "pickup": {**_COMMON, "ready": frozenset({"handed_over", "cancelled"})},
    "delivery": {
        **_COMMON,
        "ready": frozenset({"out_for_delivery", "cancelled"}),
        "out_for_delivery": frozenset({"delivered", "cancelled"}),
    },
}

# A basket line of an online order; quantities are bounded so a typo cannot reserve
# a warehouse (10 000 units of one sku is more than any store shelf holds).
Qty = Annotated[int, Field(ge=1, le=10_000)]


def can_transition(fulfilment: Fulfilment, current: str, new: str) -> bool:
    """True if ``current -> new`` is a legal step for an order of ``fulfilment``."""
    return new in TRANSITIONS[fulfilment].get(current, frozenset())


class OrderLine(Msg):
    sku: Id
    qty: Qty
    name: str = Field(default="", max_length=80)


class Customer(Msg):
    name: str = Field(min_length=1, max_length=80)
    phone: str | None = Field(default=None, max_length=32)
    address: str | None = Field(default=None, max_length=300)  # delivery orders


class OrderDispatch(Msg):
    """The order as the store receives it (``cmd/orders``). ``order_id`` is the key:
    a redelivered dispatch is recognised and printed once."""

    v: Literal[1] = 1
    order_id: Id
    store_id: Id
    fulfilment: Fulfilment
    lines: list[OrderLine] = Field(min_length=1, max_length=200)
    customer: Customer
    member_id: Id | None = None
    note: str = Field(default="", max_length=300)
    created_ms: EpochMs
    ts: EpochMs
    # The price fixed at placement (decision 0067), None on unpriced orders: ``paid``
    # online, or ``at_store``: the store collects ``total`` at pickup or delivery.
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    total: int | None = Field(default=None, ge=0)
    payment: Literal["paid", "at_store"] = "at_store"


class OrderStatusData(Msg):
    """``Event.data`` of an ``order_status`` event."""

    v: Literal[1] = 1
    order_id: Id
    status: OrderState
    ts: EpochMs
    reason: str | None = Field(default=None, max_length=200)
