"""E-shelf label (ESL) messages on the store-local bus.

The ESL access point (AP) is one device on the bus (kind ``esl_ap``); the labels
behind it sleep and check in with the AP over their own radio. The agent's ESL
driver hands the AP one job per label; a label pulls its pending job at its next
check-in, shows it and acknowledges with the hash of what it now shows.

==========================================  ====  ===================================
``store/esl_ap/{ap}/down/job``              down  ``LabelJob``: what one label must show
``store/esl_ap/{ap}/up/ack``                up    ``LabelAck``: a label shows ``content_hash``
``store/esl_ap/{ap}/up/status``             up    ``ApStatus``: AP heartbeat
==========================================  ====  ===================================

``content_hash`` covers only what the label displays (sku, price, currency, promotion,
barcode), not the price book version: a new price book version that leaves an item
unchanged leaves its labels alone (only the delta is sent).
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field

from protocols.ids import Id
from protocols.messages import EpochMs, Msg

DEVICE_KIND = "esl_ap"
JOB = "job"
ACK = "ack"
STATUS = "status"

# A 2.9" label shows about 40 characters of promotion text on two lines.
PROMO_MAX = 80
# EAN-13 / UPC-A / Code 128 payloads of shelf labels are short.
BARCODE_MAX = 48
# 50k items is a hypermarket's whole range; a bigger book is a mistake, not a store.
PRICE_BOOK_MAX_ITEMS = 50_000


class PriceBookItem(Msg):
    price_minor: int = Field(ge=0, le=10**9)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    promo_text: str | None = Field(default=None, max_length=PROMO_MAX)
    barcode: str | None = Field(default=None, max_length=BARCODE_MAX)


class PriceBook(Msg):
    """What the driver accepts on ``esl_price_book`` (command or desired shadow)."""

    v: Literal[1] = 1
    version: int = Field(ge=1)
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    items: dict[Id, PriceBookItem] = Field(max_length=PRICE_BOOK_MAX_ITEMS)


class LabelContent(Msg):
    """What a label displays. ``price_minor`` None clears the label (item withdrawn)."""

    sku: Id
    price_minor: int | None = Field(default=None, ge=0)
    currency: str = Field(min_length=3, max_length=3)
    promo_text: str | None = Field(default=None, max_length=PROMO_MAX)
    barcode: str | None = Field(default=None, max_length=BARCODE_MAX)

    def content_hash(self) -> str:
        canonical = json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))
        # 16 hex digits (64 bits): a label's tiny radio frame, and collisions between
        # two contents of the same label are what matters, not global uniqueness.
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class LabelJob(Msg):
    v: Literal[1] = 1
    job_id: Id
    label_id: Id
    version: int = Field(ge=0, description="price book version, shown small on the label")
    content: LabelContent
    content_hash: str = Field(min_length=16, max_length=16)
    ts: EpochMs


class LabelAck(Msg):
    v: Literal[1] = 1
    label_id: Id
    job_id: Id | None = None
    content_hash: str = Field(min_length=16, max_length=16)
    battery_pct: float = Field(ge=0, le=100)
    rssi_dbm: int = Field(ge=-130, le=0)
    ts: EpochMs


class ApStatus(Msg):
    v: Literal[1] = 1
    boot_id: Id  # changes when the AP restarts and forgets its queued jobs
    labels: int = Field(ge=0)
    pending: int = Field(ge=0)
    ts: EpochMs
