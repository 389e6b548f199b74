"""What a cabinet asks the store box about a code entered at it (decision 0066).

The vending driver reads ``CODE_ENTERED`` from the cabinet and hands the code to its
``CabinetDesk`` (the ``cabinets`` agent module, attached with ``attach_desk``): a pickup
code answers ``OpenDoor`` (the driver unlocks that door, reads it back and says whether
it opened with ``door_result``), a member code ``MemberHere`` (the next vend of this
cabinet is the member's, priced by ``price_vend``), anything else ``CodeRefused``. The
desk also says which doors are held for pickups (``held``: not sold to a walk-up).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pricing import Member


@dataclass(frozen=True, slots=True)
class OpenDoor:
    door: int
    order_id: str


@dataclass(frozen=True, slots=True)
class MemberHere:
    member: Member


@dataclass(frozen=True, slots=True)
class CodeRefused:
    reason: str  # protocols.pickup.REASONS, protocols.membercode.REASONS, ...


CodeAnswer = OpenDoor | MemberHere | CodeRefused


@dataclass(frozen=True, slots=True)
class VendItem:
    """A door's item as the planogram has it (list price, best-before)."""

    door: int
    item: int
    sku: str | None
    price: int
    best_before_ms: int | None


@dataclass(frozen=True, slots=True)
class PricedVend:
    price: int  # what the reader is asked for: the engine's ``paid``
    sale: dict[str, Any]  # the sale's fields for the ``vend`` event (SaleData's shape)


class CabinetDesk(Protocol):
    async def code_entered(self, cabinet_id: str, code: str) -> CodeAnswer: ...

    async def door_result(self, cabinet_id: str, order_id: str, *, opened: bool) -> None: ...

    def held(self, cabinet_id: str, door: int) -> bool: ...

    def price_vend(self, cabinet_id: str, item: VendItem,
                   member: Member | None) -> PricedVend | None: ...
