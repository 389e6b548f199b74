"""``refund()``: reverse exactly what a stored ``PricedBasket`` allocated.

Returning a whole line gives back exactly that line's stored amounts: money paid, stored
value, points paid with, and it takes back the points the line earned. Returning part of
a line (``k`` of ``qty`` units, after ``r`` already returned) gives back
``floor(x * (r + k) / qty) - floor(x * r / qty)`` of every stored amount ``x``, so any
sequence of partial returns adds up to exactly the whole line.

Units are whole numbers (``int``, not ``bool``): ``1.5`` would make every amount a float
and ``"1"`` would fail deep inside with a ``TypeError``; both are refused up front with
``InvalidRefund``, like any other refund the sale does not allow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pricing.errors import InvalidRefund
from pricing.money import prorate
from pricing.result import Allocation, PricedBasket, RefundLine, RefundResult


def _units(value: object, *, line_id: str, what: str) -> int:
    # bool is an int subclass; True units is a caller's mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRefund(f"{what} must be a whole number of units, not {value!r}",
                            line_id=line_id)
    return value


def refund(
    priced_basket: PricedBasket,
    lines_returned: Mapping[str, int] | Iterable[str],
    *,
    already_returned: Mapping[str, int] | None = None,
) -> RefundResult:
    """Refund ``lines_returned`` (line id -> units, or line ids for whole lines)."""
    by_id = {ln.line_id: ln for ln in priced_basket.lines}
    if isinstance(lines_returned, Mapping):
        wanted = dict(lines_returned)
    else:
        wanted = {
            line_id: by_id[line_id].qty if line_id in by_id else 0 for line_id in lines_returned
        }
    before = already_returned or {}
    out = []
    position = {ln.line_id: k for k, ln in enumerate(priced_basket.lines)}
    for line_id in sorted(wanted, key=lambda lid: (position.get(lid, -1), lid)):
        ln = by_id.get(line_id)
        if ln is None:
            raise InvalidRefund("no such line in the sale", line_id=line_id)
        k = _units(wanted[line_id], line_id=line_id, what="units returned")
        r = _units(before.get(line_id, 0), line_id=line_id, what="units already returned")
        if k <= 0 or r < 0 or r + k > ln.qty:
            raise InvalidRefund(f"cannot return {k} after {r} of {ln.qty} units", line_id=line_id)

        def part(x: int, *, _q: int = ln.qty, _r: int = r, _k: int = k) -> int:
            return prorate(x, _r + _k, _q) - prorate(x, _r, _q)

        paid, stored, points_value = part(ln.paid), part(ln.stored_value), part(ln.points_value)
        out.append(
            RefundLine(
                line_id,
                ln.sku,
                k,
                paid + stored + points_value,
                paid,
                stored,
                points_value,
                part(ln.points_used),
                part(ln.points_earned),
                tuple(Allocation(a.promotion_id, a.phase, part(a.amount)) for a in ln.discounts),
            )
        )
    return RefundResult(
        priced_basket.basket_id,
        priced_basket.currency,
        tuple(out),
        sum(x.amount for x in out),
        sum(x.paid for x in out),
        sum(x.stored_value for x in out),
        sum(x.points_value for x in out),
        sum(x.points_returned for x in out),
        sum(x.points_reversed for x in out),
    )
