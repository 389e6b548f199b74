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
``hooks``           ``register(hooks, metrics)``: the ingest post-commit hooks
==================  ================================================================
"""

from cloud.orders.errors import (
    IdempotencyConflict,
    InvalidOrder,
    NoStoreAvailable,
    OrderError,
    UnknownOrder,
)
from cloud.orders.metrics import OrderMetrics

__all__ = [
    "IdempotencyConflict",
    "InvalidOrder",
    "NoStoreAvailable",
    "OrderError",
    "OrderMetrics",
    "UnknownOrder",
]
