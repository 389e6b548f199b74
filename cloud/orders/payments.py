"""Paying an online order: the provider-neutral signed notice carts use (``protocols.payments``).

An order placed while the cloud takes online payments (``order_payment_secret`` set) is
``payment = due``: the API answers its payload, which names exactly what is paid::

    SFPAY:{store_id}:order:{order_id}:{total}:{currency}:{digest of the frozen price}

The payment gateway POSTs the notice (``POST /api/v1/order-payments/notify``, no API
token: the HMAC under ``order_payment_secret`` is the authentication). ``accept_notice``
marks the order paid once; the route then dispatches it to its store (decision 0067: an
unpaid order is not dispatched). Outcomes, each counted in
``storefleet_order_payment_notices_total{outcome}``:

=================  ======  ==========================================================
``paid``           200     the order is paid now
``duplicate``      200     the same notice again (same provider reference): same answer
``not_configured`` 503     the cloud takes no online payments
``bad_signature``  401     missing or wrong ``X-Storefleet-Signature``
``bad_notice``     422     not a notice, or not an ``SFPAY`` payload
``unknown_order``  404     no such order at that store, or a payload the cloud never issued
``amount_mismatch`` 409    amount or currency differs from the order's fixed price
``already_paid``   409     a second, different payment of a paid order
``replay``         409     the provider reference already paid another order
``not_due``        409     the order is not paid online (``at_store``, unpriced)
``cancelled``      409     the order was cancelled before it was paid
=================  ======  ==========================================================

A refused notice is not a payment: the gateway reverses it.
"""

from __future__ import annotations

import hashlib
import json
import logging

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import CouponRedemption
from cloud.db.models_orders import Order
from cloud.orders import routing
from cloud.orders.errors import PaymentRefused
from protocols.payments import PaymentNotice, QrPayload, verify

logger = logging.getLogger(__name__)

SOURCE = "order"  # the payload's source field for an online order (a cart id for carts)


def price_digest(order: Order) -> str:
    """16 hex digits of sha256 over the frozen price: binds the payload to that price."""
    doc = json.dumps(order.priced, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def payment_payload(order: Order) -> str | None:
    """What the shopper's payment names; None when the order is not paid online."""
    if order.total is None or order.currency is None or order.payment == "at_store":
        return None
    return str(QrPayload(order.store_id, SOURCE, order.order_id, order.total,
                         order.currency, price_digest(order)))


def accept_notice(session: Session, body: bytes, signature: str | None, *,
                  secret: str | None, now_ms: int) -> tuple[Order, str]:
    """Verify and apply one notice; returns ``(order, "paid" | "duplicate")``.

    Raises ``PaymentRefused(outcome, status, detail)``."""
    if not secret:
        raise PaymentRefused("not_configured", 503, "the cloud takes no online payments "
                                                    "(order_payment_secret unset)")
    if not verify(secret, body, signature):
        raise PaymentRefused("bad_signature", 401, "bad or missing payment signature")
    try:
        notice = PaymentNotice.model_validate_json(body)
        qr = QrPayload.parse(notice.payload)
    except (ValidationError, ValueError) as err:
        raise PaymentRefused("bad_notice", 422, f"bad payment notice: {err}") from err
    order = (session.get(Order, qr.checkout_id, with_for_update=True)
             if qr.cart_id == SOURCE else None)
    if order is None or order.store_id != qr.store_id:
        raise PaymentRefused("unknown_order", 404, f"no order {qr.checkout_id!r} at store "
                                                   f"{qr.store_id!r}")
    if order.payment == "paid":
        if order.payment_ref == notice.provider_ref:
            return order, "duplicate"
        raise PaymentRefused("already_paid", 409, f"order {order.order_id} was already paid "
                                                  f"({order.payment_ref})")
    other = session.scalar(select(Order.order_id).where(
        Order.payment_ref == notice.provider_ref))
    if other is not None:
        raise PaymentRefused("replay", 409, f"payment {notice.provider_ref!r} already paid "
                                            f"order {other}")
    if order.payment != "due":
        raise PaymentRefused("not_due", 409, f"order {order.order_id} is not paid online "
                                             f"({order.payment})")
    if (notice.amount, notice.currency) != (order.total, order.currency) or \
            (qr.amount, qr.currency) != (order.total, order.currency):
        raise PaymentRefused("amount_mismatch", 409,
                             f"paid {notice.amount} {notice.currency}, the order is "
                             f"{order.total} {order.currency}")
    if notice.payload != payment_payload(order):
        raise PaymentRefused("unknown_order", 404, "the payload is not the one issued for "
                                                   f"order {order.order_id}")
    if order.status == "cancelled":
        raise PaymentRefused("cancelled", 409, f"order {order.order_id} was cancelled")
    try:
        with session.begin_nested():
            order.payment, order.paid_ms, order.payment_ref = "paid", now_ms, \
                notice.provider_ref
            order.updated_ms = now_ms
    except sa_exc.IntegrityError as err:  # the same reference paying another order now
        raise PaymentRefused("replay", 409, f"payment {notice.provider_ref!r} already paid "
                                            "another order") from err
    return order, "paid"


# Half an hour to pay, as web shops hold a basket: the units stay reserved meanwhile.
PAYMENT_WINDOW_MS = 30 * 60_000


def expire_unpaid(session: Session, *, now_ms: int,
                  window_ms: int = PAYMENT_WINDOW_MS) -> int:
    """Cancel orders left unpaid longer than ``window_ms``: their units go back to the
    store's stock and their member coupons back to the member. Returns how many.

    A clock-driven job (``cloud.scheduler``); the row locks make two replicas running it
    at once cancel each order once (the second sees it cancelled)."""
    due = session.scalars(select(Order).where(
        Order.payment == "due", Order.status == "placed",
        Order.created_ms <= now_ms - window_ms).order_by(Order.order_id)
        .with_for_update()).all()
    for order in due:
        order.status, order.updated_ms = "cancelled", now_ms
        routing.release(session, order.store_id, order.lines, now_ms=now_ms)
        session.execute(delete(CouponRedemption).where(
            CouponRedemption.sale_id == order.order_id))
        logger.info("order %s (store %s) cancelled: unpaid after %d min", order.order_id,
                    order.store_id, window_ms // 60_000)
    return len(due)
