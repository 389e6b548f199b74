"""The pick ticket shows the price fixed at placement (decision 0067): paid online, or
the amount the store collects; an unpriced order (an older cloud) shows none."""

from __future__ import annotations

from typing import Any

from edge_agent.pos.orders import ticket_lines
from protocols.codec import decode, encode
from protocols.orders import Customer, OrderDispatch, OrderLine


def dispatch(**kw: Any) -> OrderDispatch:
    return OrderDispatch(order_id="ord-1", store_id="S001", fulfilment="pickup",
                         lines=[OrderLine(sku="milk", qty=2)], customer=Customer(name="Ada"),
                         created_ms=1, ts=2, **kw)


def test_a_paid_order_says_so_and_an_at_store_one_says_what_to_collect() -> None:
    paid = ticket_lines(dispatch(currency="EUR", total=1205, payment="paid"))
    assert paid[-1] == "PAID ONLINE: 12.05 EUR"
    due = ticket_lines(dispatch(currency="CNY", total=7, payment="at_store"))
    assert due[-1] == "TO COLLECT: 0.07 CNY"
    unpriced = ticket_lines(dispatch())
    assert not any("PAID" in ln or "COLLECT" in ln for ln in unpriced)


def test_the_price_survives_the_wire_and_an_older_dispatch_still_decodes() -> None:
    sent = dispatch(currency="EUR", total=530, payment="paid")
    assert decode(encode(sent), OrderDispatch) == sent
    older = encode(dispatch()).replace(b',"currency":null,"total":null,"payment":"at_store"',
                                       b"")
    assert b"total" not in older
    got = decode(older, OrderDispatch)
    assert (got.total, got.currency, got.payment) == (None, None, "at_store")
