"""Confirming a cart checkout: the payment provider's signed notification.

The cart screen shows a payment QR whose payload names exactly what is being paid::

    SFPAY:{store_id}:{cart_id}:{checkout_id}:{amount}:{currency}:{basket digest}

The shopper pays it with a payment app. The payment provider (in practice the chain's
payment gateway, which receives the provider's webhook and relays it over the store's
VPN) then POSTs ``/api/payments/notify`` to the store box::

    {"payload": "<the QR payload>", "amount": 1234, "currency": "CNY", "provider_ref": "..."}

with the header ``X-Storefleet-Signature: sha256=<hex HMAC-SHA256 of the raw body>``
keyed by the store's ``payment_secret``. Only a notice that verifies, names a checkout
the box issued and paid its exact amount records the sale (``backend.paid``); the
e-receipt is pushed to the cart's screen. Delivered again, it answers the same receipt.

``payment_confirmation``: ``"provider"`` (the default) accepts only such notices and
refuses the screen's "I have paid" button; ``"screen"`` lets that button confirm, for
demos and trials where no money changes hands.
"""

from __future__ import annotations

from typing import Literal

# The notice scheme is shared with the cloud's online orders (decision 0067).
from protocols.payments import SIGNATURE_HEADER, PaymentNotice, QrPayload, sign, verify

Confirmation = Literal["provider", "screen"]
CONFIRMATIONS: tuple[Confirmation, ...] = ("provider", "screen")

__all__ = ["CONFIRMATIONS", "SIGNATURE_HEADER", "Confirmation", "PaymentNotice", "QrPayload",
           "sign", "verify"]
