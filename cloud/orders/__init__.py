"""Online orders and offline coupon ranges in the cloud (no HTTP here).

==================  ================================================================
``routing``         haversine distance; nearest store with every line in stock;
                    all-or-nothing stock reservation
``service``         place (idempotent by client key), look up, dispatch message,
                    store locations and stock levels
``status``          ``order_status`` events: state machine, idempotent by event id
``dispatch``        publish an order to its store (``cmd/orders``, QoS 1)
``coupon_ranges``   code ranges pre-allocated to stores; reconciling offline
                    redemptions (double use flagged)
``pricing``         the order priced at placement by the engine's online channel
``payments``        the signed payment notice (``protocols.payments``); unpaid expiry
``earn``            a paid order handed over earns through loyalty's sale path
``stock``           sales, refunds and vends keep ``stock`` true (once per event)
``hooks``           ``register(hooks, metrics, loyalty)``: the ingest post-commit hooks
==================  ================================================================
"""

from cloud.orders.errors import (
    IdempotencyConflict,
    InvalidOrder,
    NoStoreAvailable,
    OrderError,
    PaymentRefused,
    UnknownOrder,
    Unpriceable,
)
from cloud.orders.metrics import OrderMetrics

__all__ = [
    "IdempotencyConflict",
    "InvalidOrder",
    "NoStoreAvailable",
    "OrderError",
    "OrderMetrics",
    "PaymentRefused",
    "UnknownOrder",
    "Unpriceable",
]
