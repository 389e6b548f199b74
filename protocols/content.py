"""A store's content manifest and its content status report (decision 0046).

The cloud publishes one signed manifest per store, retained on ``content/manifest``
(``cloud.promotions.signing`` format ``{"payload", "key_id", "signature"}``, signed with
the cloud's signing key). The payload says everything the store should run: the price
book version it should be on, small documents carried inline (``schedule``,
``playlists``, ...) and the assets (artifacts of target ``content``) they name by
sha256. Versions rise per store; the box applies a manifest only when every asset is
in its cache, and reports what it runs as a ``content_status`` event.

Each asset says which document uses it (``doc``: ``schedule``, ``playlists``, or ""
for assets published on their own), so one document can be replaced in a store's next
manifest without touching the others' assets. The report carries, per *part* (the
till's price book, the audio units' schedule, the screens' playlists), the version the
consumer on the box actually took and since when, and the store's shelf-label counts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocols.artifacts import Sha256
from protocols.ids import Id

DOCUMENT = "storefleet.content/1"
# Inline documents ride in a retained MQTT message: a schedule or playlists are a few
# KiB; 256 KiB keeps the message well under the broker's limits.
MAX_DOCUMENTS_BYTES = 256 * 1024
MAX_ASSETS = 10_000  # a large store's audio, images and video, with room to spare
DETAIL_MAX = 500


class ContentAsset(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: Sha256
    size: int = Field(ge=0)
    name: str = Field(min_length=1, max_length=200)
    doc: str = Field(default="", max_length=64)  # the document that uses it; "": none


class ContentManifest(BaseModel):
    """The signed payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    document: str = Field(default=DOCUMENT, pattern=r"^storefleet\.content/1$")
    store_id: Id
    version: int = Field(ge=1)
    created_ms: int = Field(ge=0)
    price_book_version: int | None = None
    documents: dict[str, Any] = Field(default_factory=dict)
    assets: list[ContentAsset] = Field(default_factory=list, max_length=MAX_ASSETS)

    @property
    def schedule_version(self) -> str | None:
        """The ``version`` the schedule document gives itself, if any."""
        return self.document_version("schedule")

    def document_version(self, key: str) -> str | None:
        """The ``version`` the document ``key`` gives itself, if any."""
        document = self.documents.get(key)
        version = document.get("version") if isinstance(document, dict) else None
        return None if version is None else str(version)[:64]

    def assets_of(self, doc: str) -> list[ContentAsset]:
        return [a for a in self.assets if a.doc == doc]


# The parts a box reports as applied (the ``parts`` keys): the till's price book, the
# audio units' schedule, the screens' playlists.
PARTS = ("pricebook", "schedule", "playlists")


class PartApplied(BaseModel):
    """One consumer's applied version (what it runs, not what it was told)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: str = Field(max_length=64)
    applied_ms: int = Field(ge=0)
    detail: str = Field(default="", max_length=DETAIL_MAX)  # why it could not, or ""


class LabelCounts(BaseModel):
    """Shelf labels of the store: showing what the till's book and promotions say
    (``current``), sent and not yet confirmed by the label (``pending``), not confirmed
    within the ESL driver's stale bound: out of radio reach, flat battery (``stale``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    current: int = Field(default=0, ge=0)
    pending: int = Field(default=0, ge=0)
    stale: int = Field(default=0, ge=0)


class ContentStatusReport(BaseModel):
    """The ``data`` of a ``content_status`` event: what the box runs now."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = 1
    version: int | None = Field(default=None, ge=1)  # the applied manifest, None: none yet
    applied_ms: int | None = Field(default=None, ge=0)
    price_book_version: int | None = None
    schedule_version: str | None = Field(default=None, max_length=64)
    assets_present: int = Field(default=0, ge=0)
    assets_missing: int = Field(default=0, ge=0)
    # The last refusal (a tampered manifest or asset), "" when the last one applied.
    detail: str = Field(default="", max_length=DETAIL_MAX)
    parts: dict[str, PartApplied] = Field(default_factory=dict, max_length=len(PARTS))
    labels: LabelCounts | None = None
