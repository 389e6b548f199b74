"""E-shelf label (ESL) messages on the store-local bus.

The ESL access point (AP) is one device on the bus (kind ``esl_ap``); the labels
behind it sleep and check in with the AP over their own radio. The agent's ESL
driver hands the AP one job per label; a label pulls its pending job at its next
check-in, shows it and acknowledges with the hash of what it now shows.

==========================================  ====  ===================================
``store/esl_ap/{ap}/down/job``              down  ``LabelJob``: what one label must show
``store/esl_ap/{ap}/up/ack``                up    ``LabelAck``: a label shows ``content_hash``
``store/esl_ap/{ap}/up/status``             up    ``ApStatus``: AP heartbeat
``store/esl_ap/{ap}/down/fw``               down  ``FwDown``: firmware begin/chunk/commit
``store/esl_ap/{ap}/up/fw``                 up    ``FwUp``: firmware ack/result
==========================================  ====  ===================================

Firmware update (decision 0039): ``FwBegin`` names the image (update id, version, size,
sha256, chunk size); the AP answers ``FwAck`` with the next offset it expects (0 for a
new update, more when it already holds part of the same update id: that is how a
transfer resumes after a disconnect or an agent restart). ``FwChunk`` carries bytes at
an offset (base64 in the JSON codec); a chunk at the expected offset is stored, any
other is ignored, and either way the AP acks its next expected offset. ``FwCommit``
asks the AP to check size and sha256 and reboot into the image: ``FwResult`` says
``ok`` (the AP now runs ``version``) or ``bad_image`` / ``incomplete`` (it keeps the
old firmware and forgets the staged image).

``content_hash`` covers only what the label displays (sku, price, currency, promotion,
barcode), not the price book version: a new price book version that leaves an item
unchanged leaves its labels alone (only the delta is sent).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Annotated, Literal

from pydantic import Field, RootModel

from protocols.ids import Id
from protocols.messages import EpochMs, Msg

DEVICE_KIND = "esl_ap"
JOB = "job"
ACK = "ack"
STATUS = "status"
FW = "fw"

# A 2.9" label shows about 40 characters of promotion text on two lines.
PROMO_MAX = 80
# EAN-13 / UPC-A / Code 128 payloads of shelf labels are short.
BARCODE_MAX = 48
# 50k items is a hypermarket's whole range; a bigger book is a mistake, not a store.
PRICE_BOOK_MAX_ITEMS = 50_000
# Firmware versions are short tags ("2.4.1", "2.5.0-rc1").
FW_VERSION_MAX = 32


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
    fw_version: str | None = Field(default=None, max_length=FW_VERSION_MAX)
    ts: EpochMs


# ---- firmware update (decision 0039) ---------------------------------------------------

# Base64 grows a chunk by 4/3: 8 KiB of image is about 11 KiB of JSON, under the 16 KiB
# both ends accept per message.
FW_CHUNK_MAX = 8 * 1024
# An AP's firmware is a few MiB; 64 MiB is a mistake, not an image.
FW_IMAGE_MAX = 64 * 1024 * 1024
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
FwVersion = Annotated[str, Field(min_length=1, max_length=FW_VERSION_MAX,
                                 pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")]
FwOutcome = Literal["ok", "bad_image", "incomplete", "unknown_update"]


class FwBegin(Msg):
    v: Literal[1] = 1
    op: Literal["begin"] = "begin"
    update_id: Id
    version: FwVersion
    size: int = Field(gt=0, le=FW_IMAGE_MAX)
    sha256: Sha256Hex
    chunk_size: int = Field(gt=0, le=FW_CHUNK_MAX)


class FwChunk(Msg):
    v: Literal[1] = 1
    op: Literal["chunk"] = "chunk"
    update_id: Id
    offset: int = Field(ge=0, lt=FW_IMAGE_MAX)
    data: str = Field(min_length=1, max_length=(FW_CHUNK_MAX + 2) // 3 * 4)  # base64

    @classmethod
    def of(cls, update_id: str, offset: int, raw: bytes) -> FwChunk:
        return cls(update_id=update_id, offset=offset, data=base64.b64encode(raw).decode())

    def raw(self) -> bytes:
        """The chunk's bytes; ``binascii.Error`` (a ``ValueError``) on bad base64."""
        return base64.b64decode(self.data, validate=True)


class FwCommit(Msg):
    v: Literal[1] = 1
    op: Literal["commit"] = "commit"
    update_id: Id


class FwDown(RootModel[Annotated[FwBegin | FwChunk | FwCommit, Field(discriminator="op")]]):
    """Any firmware message to the AP (``decode(payload, FwDown).root``)."""


class FwAck(Msg):
    v: Literal[1] = 1
    op: Literal["ack"] = "ack"
    update_id: Id
    next_offset: int = Field(ge=0, le=FW_IMAGE_MAX)


class FwResult(Msg):
    v: Literal[1] = 1
    op: Literal["result"] = "result"
    update_id: Id
    outcome: FwOutcome
    fw_version: str = Field(max_length=FW_VERSION_MAX)  # what the AP runs now
    detail: str = Field(default="", max_length=200)


class FwUp(RootModel[Annotated[FwAck | FwResult, Field(discriminator="op")]]):
    """Any firmware message from the AP (``decode(payload, FwUp).root``)."""
