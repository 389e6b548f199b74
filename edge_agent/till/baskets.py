"""The open baskets of the lanes: what a lane terminal has rung up and not completed.

A basket lives in the box's memory from "open" to "complete" (or "void"); only a
completed sale is durable (the till's ledger, then the outbox). A box restarted with
baskets open loses them: the cashier scans again, as after a lane terminal's own crash,
and nothing was charged. Each lane holds at most ``max_open_baskets`` (a suspended
basket beside the next shopper's), so memory is bounded by the lanes configured.

The basket id is the sale id it completes as (a uuid7): a terminal that repeats
"complete" after a lost answer gets the same sale back, never a second one.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from edge_agent.pos.sales import Tenders
from edge_agent.till.members import MemberRef
from pricing import Line, Member

MAX_LINES = 500  # a receipt prints at most 500 lines (edge_agent.pos.receipt)
MAX_QTY = 100_000  # units of one line (the receipt's bound)
MAX_COUPONS = 20  # codes presented on one basket


@dataclass(slots=True)
class BasketLine:
    line_id: str
    code: str  # the scan code: the catalog's sku
    qty: int


@dataclass(slots=True)
class OpenBasket:
    basket_id: str
    lane_id: str
    opened_ms: int
    lines: dict[str, BasketLine] = field(default_factory=dict)  # by code, scan order
    member: Member | None = None
    member_ref: MemberRef | None = None
    coupons: list[str] = field(default_factory=list)
    tender: Tenders | None = None
    order_id: str | None = None  # the online order it collects (decision 0069)
    next_line: int = 1
    completing: bool = False  # the sale is being recorded: the basket is fixed

    def add(self, code: str, qty: int) -> BasketLine:
        """``qty`` more of ``code``: the same code again adds to its line."""
        line = self.lines.get(code)
        if line is None:
            line = self.lines[code] = BasketLine(str(self.next_line), code, 0)
            self.next_line += 1
        line.qty += qty
        return line

    def remove(self, code: str, qty: int | None) -> None:
        """``qty`` fewer of ``code`` (None: the whole line); the caller checked it is
        there."""
        line = self.lines[code]
        if qty is None or qty >= line.qty:
            del self.lines[code]
        else:
            line.qty -= qty

    def engine_lines(self) -> tuple[Line, ...]:
        return tuple(Line(line_id=ln.line_id, sku=ln.code, qty=ln.qty)
                     for ln in self.lines.values())


class CompletedSales:
    """The last sales a lane completed, by basket id, as answered (bounded)."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._by_id: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def get(self, basket_id: str) -> dict[str, Any] | None:
        return self._by_id.get(basket_id)

    def put(self, basket_id: str, answer: dict[str, Any]) -> None:
        self._by_id[basket_id] = answer
        while len(self._by_id) > self._keep:
            self._by_id.popitem(last=False)
