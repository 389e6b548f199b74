"""A member's points or stored-value spend made at a store box (decision 0064).

The ``data`` of a ``member_spend`` event (a business event: never dropped) and the body
of the cloud's ``POST /api/v1/members/{member_id}/authorise``. ``spend_id`` is the box's
idempotency key: the cloud applies a spend of a store once, whichever of the two
brings it first (an authorisation whose answer was lost, then its offline event).
A ``member_spend_release`` event (same ``data``) gives a spend back when the sale it was
authorised for could not be recorded (decision 0068); a released spend id is never
authorised again.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocols.ids import Id

KIND = "member_spend"
# A spend authorised for a sale that was then not recorded (decision 0068): its data is
# the spend's ``MemberSpendData``; the cloud gives back what it took, once.
RELEASE_KIND = "member_spend_release"
# "spend:<store>/<spend id>" is the ledger's key: a 64-char store and 40 fit its 128.
SPEND_ID_MAX = 40
MAX_AMOUNT = 10**12  # points or minor units: far above any basket, below a BigInteger

Unit = Literal["points", "stored_value"]
# The one id type (decision 0031), shorter: "spend-<id>" is also the event's id.
SpendId = Annotated[Id, Field(max_length=SPEND_ID_MAX)]


class SpendRequest(BaseModel):
    """What a box asks the cloud to authorise (the member is in the path)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store_id: Id
    spend_id: SpendId
    unit: Unit
    amount: int = Field(gt=0, le=MAX_AMOUNT)
    spent_ms: int = Field(ge=0)


class MemberSpendData(BaseModel):
    """The ``data`` of a ``member_spend`` event: a spend the box made offline."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = 1
    spend_id: SpendId
    member_id: Id
    unit: Unit
    amount: int = Field(gt=0, le=MAX_AMOUNT)
    spent_ms: int = Field(ge=0)
