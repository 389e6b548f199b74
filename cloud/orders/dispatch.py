"""Publishing an order to its store: ``sf/v1/{store}/cmd/orders``, QoS 1, not retained.

Not retained: a retained topic holds one message, and a store may get many orders
while offline. The store's persistent uplink session (``clean_session=False``) queues
them at the broker; an order whose publish failed stays ``dispatch = failed`` and is
re-sent by ``POST /orders/{id}/dispatch`` (the store prints an order id once, so a
re-send is always safe).
"""

from __future__ import annotations

import logging

from cloud.db.models_orders import Order
from cloud.errors import PublishError
from cloud.orders.metrics import OrderMetrics
from cloud.orders.service import dispatch_message
from cloud.publish import Publisher
from protocols import topics
from protocols.codec import encode

logger = logging.getLogger(__name__)


async def dispatch(publisher: Publisher, order: Order, *, now_ms: int,
                   metrics: OrderMetrics) -> bool:
    """True when the broker took the order."""
    msg = dispatch_message(order, now_ms=now_ms)
    try:
        await publisher.publish(topics.orders(order.store_id), encode(msg), qos=1,
                                retain=False)
    except PublishError as err:
        metrics.dispatch.labels(result="failed").inc()
        logger.error("order %s not published to store %s: %s", order.order_id,
                     order.store_id, err)
        return False
    metrics.dispatch.labels(result="published").inc()
    return True
