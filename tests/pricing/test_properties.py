"""Properties that hold for every basket and ruleset, checked with hypothesis on both
engine implementations (Python reference and compiled)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricing import (
    Basket,
    Member,
    PricedBasket,
    PromotionSnapshot,
    compile,
    load_snapshot,
    refund,
)
from tests.pricing.build_golden import CATALOG
from tests.pricing.engines import IMPLEMENTATIONS, engine_price
from tests.pricing.strategies import NOW, STORE_MODEL, baskets, members, snapshots

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _price(
    impl: str, basket: Basket, snap: PromotionSnapshot, member: Member | None
) -> PricedBasket:
    result: PricedBasket = engine_price(impl)(
        basket, CATALOG, compile(snap), member, NOW, STORE_MODEL
    )
    return result


each_engine = pytest.mark.parametrize("impl", IMPLEMENTATIONS)


@each_engine
@SETTINGS
@given(baskets(), snapshots(), members, st.randoms(use_true_random=False))
def test_line_order_never_changes_the_result(impl, basket, snap, member, rnd) -> None:
    lines = list(basket.lines)
    rnd.shuffle(lines)
    shuffled = basket.model_copy(update={"lines": tuple(lines)})
    assert _price(impl, shuffled, snap, member) == _price(impl, basket, snap, member)


@each_engine
@SETTINGS
@given(baskets(), snapshots(), members)
def test_books_balance(impl, basket, snap, member) -> None:
    r = _price(impl, basket, snap, member)
    by_promo: dict[str, int] = defaultdict(int)
    for ln in r.lines:
        assert ln.net >= 0 and ln.paid >= 0
        assert ln.stored_value >= 0 and ln.points_value >= 0 and ln.points_used >= 0
        assert all(a.amount > 0 for a in ln.discounts)
        assert ln.gross == ln.unit_price * ln.qty
        assert ln.net == ln.gross - sum(a.amount for a in ln.discounts)
        assert ln.paid == ln.net - ln.stored_value - ln.points_value
        for a in ln.discounts:
            by_promo[a.promotion_id] += a.amount
    assert r.subtotal == sum(ln.gross for ln in r.lines)
    assert r.total == sum(ln.net for ln in r.lines)
    assert r.discount == r.subtotal - r.total == sum(by_promo.values())
    assert r.paid == sum(ln.paid for ln in r.lines) == r.total - r.stored_value - r.points_value
    assert r.stored_value == sum(ln.stored_value for ln in r.lines)
    assert r.points_value == sum(ln.points_value for ln in r.lines)
    assert r.points_used == sum(ln.points_used for ln in r.lines)
    assert r.points_earned == sum(ln.points_earned for ln in r.lines)
    # every discount in the explanation is allocated onto lines to the minor unit
    for applied in r.applied:
        if applied.phase != "tender":
            assert by_promo[applied.promotion_id] == applied.amount
    if member is None:
        assert r.stored_value == r.points_used == r.points_earned == 0
    else:
        assert r.stored_value <= member.stored_value_balance
        assert r.points_used <= member.points_balance


@each_engine
@SETTINGS
@given(baskets(), snapshots(), members)
def test_refund_of_everything_returns_exactly_what_was_paid(impl, basket, snap, member) -> None:
    r = _price(impl, basket, snap, member)
    back = refund(r, [ln.line_id for ln in r.lines])
    assert back.amount == r.total
    assert back.paid == r.paid
    assert back.stored_value == r.stored_value
    assert back.points_value == r.points_value
    assert back.points_returned == r.points_used
    assert back.points_reversed == r.points_earned
    for ln, rl in zip(r.lines, back.lines, strict=True):
        assert rl.discounts == ln.discounts


@each_engine
@SETTINGS
@given(baskets(), snapshots(), members, st.data())
def test_partial_refunds_add_up_to_the_whole(impl, basket, snap, member, data) -> None:
    r = _price(impl, basket, snap, member)
    returned: dict[str, int] = {}
    totals: defaultdict[str, int] = defaultdict(int)
    for ln in r.lines:
        while returned.get(ln.line_id, 0) < ln.qty:
            k = data.draw(st.integers(1, ln.qty - returned.get(ln.line_id, 0)))
            part = refund(r, {ln.line_id: k}, already_returned=returned)
            returned[ln.line_id] = returned.get(ln.line_id, 0) + k
            for field in ("amount", "paid", "stored_value", "points_returned", "points_reversed"):
                totals[field] += getattr(part, field)
    assert totals["amount"] == r.total
    assert totals["paid"] == r.paid
    assert totals["stored_value"] == r.stored_value
    assert totals["points_returned"] == r.points_used
    assert totals["points_reversed"] == r.points_earned


@SETTINGS
@given(snapshots())
def test_snapshot_json_round_trip_keeps_the_hash(snap) -> None:
    again = load_snapshot(snap.to_json())
    assert again == snap
    assert again.ruleset_hash() == snap.ruleset_hash()
    assert load_snapshot(snap.model_dump_json()).ruleset_hash() == snap.ruleset_hash()


@each_engine
@SETTINGS
@given(baskets(), snapshots(), members)
def test_priced_basket_json_round_trip_and_snapshot_path(impl, basket, snap, member) -> None:
    r = _price(impl, basket, snap, member)
    assert PricedBasket.from_json(r.to_json()) == r
    # handing price() the raw snapshot compiles it on the spot: same answer
    assert engine_price(impl)(basket, CATALOG, snap, member, NOW, STORE_MODEL) == r
