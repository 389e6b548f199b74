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

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SIGNATURE_HEADER = "X-Storefleet-Signature"
Confirmation = Literal["provider", "screen"]
CONFIRMATIONS: tuple[Confirmation, ...] = ("provider", "screen")


class PaymentNotice(BaseModel):
    """The body of ``POST /api/payments/notify``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    payload: Annotated[str, Field(min_length=1, max_length=256)]
    amount: Annotated[int, Field(ge=0)]  # minor units actually paid
    currency: Annotated[str, Field(min_length=3, max_length=8)]
    provider_ref: Annotated[str, Field(min_length=1, max_length=128)]


@dataclass(frozen=True, slots=True)
class QrPayload:
    store_id: str
    cart_id: str
    checkout_id: str
    amount: int
    currency: str
    digest: str

    def __str__(self) -> str:
        return (f"SFPAY:{self.store_id}:{self.cart_id}:{self.checkout_id}:{self.amount}:"
                f"{self.currency}:{self.digest}")

    @classmethod
    def parse(cls, text: str) -> QrPayload:
        """Raises ``ValueError`` naming what is wrong."""
        parts = text.split(":")
        if len(parts) != 7 or parts[0] != "SFPAY":
            raise ValueError("payload is not an SFPAY:store:cart:checkout:amount:currency:"
                             "digest string")
        if not parts[4].isdigit():
            raise ValueError(f"payload amount {parts[4]!r} is not a whole number")
        return cls(parts[1], parts[2], parts[3], int(parts[4]), parts[5], parts[6])


def sign(secret: str, body: bytes) -> str:
    """The ``X-Storefleet-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    return signature is not None and hmac.compare_digest(sign(secret, body), signature)
