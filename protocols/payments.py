"""The provider-neutral signed payment notice: one scheme for carts and online orders.

What is being paid is named by a payload string the payer's app shows or is handed::

    SFPAY:{store_id}:{source}:{checkout_id}:{amount}:{currency}:{digest}

For a cart, ``source`` is the cart id and ``checkout_id`` the checkout (the cart
screen's QR, ``edge_agent/cartscreen/payment.py``); for an online order it is
``order`` and the order id (``cloud/orders/payments.py``). ``digest`` binds the payload
to exactly what was priced. The payment provider (in practice the chain's payment
gateway, which receives the provider's webhook) then POSTs::

    {"payload": "<the payload>", "amount": 1234, "currency": "EUR", "provider_ref": "..."}

with the header ``X-Storefleet-Signature: sha256=<hex HMAC-SHA256 of the raw body>``
keyed by a secret shared with the gateway. Only a notice that verifies, names a payment
the receiver issued and paid its exact amount counts; the receiver answers a retried
notice with its first answer.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

SIGNATURE_HEADER = "X-Storefleet-Signature"
PREFIX = "SFPAY"


class PaymentNotice(BaseModel):
    """The body of a payment notice."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    payload: Annotated[str, Field(min_length=1, max_length=256)]
    amount: Annotated[int, Field(ge=0)]  # minor units actually paid
    currency: Annotated[str, Field(min_length=3, max_length=8)]
    provider_ref: Annotated[str, Field(min_length=1, max_length=128)]


@dataclass(frozen=True, slots=True)
class QrPayload:
    """The payload string, parsed. ``cart_id`` is the payment's source (a cart id, or
    ``order`` for an online order)."""

    store_id: str
    cart_id: str
    checkout_id: str
    amount: int
    currency: str
    digest: str

    def __str__(self) -> str:
        return (f"{PREFIX}:{self.store_id}:{self.cart_id}:{self.checkout_id}:{self.amount}:"
                f"{self.currency}:{self.digest}")

    @classmethod
    def parse(cls, text: str) -> QrPayload:
        """Raises ``ValueError`` naming what is wrong."""
        parts = text.split(":")
        if len(parts) != 7 or parts[0] != PREFIX:
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
