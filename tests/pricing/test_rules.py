"""Unit tests per promotion kind, conditions, errors and refunds beyond the golden corpus."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pricing import (
    ENGINE_VERSION,
    Basket,
    CurrencyMismatch,
    InvalidBasket,
    InvalidPromotion,
    InvalidRefund,
    Line,
    Member,
    PricingError,
    PromotionSnapshot,
    Store,
    UnknownSku,
    compile,
    load_snapshot,
    price,
    refund,
)
from pricing.promotions import Markdown, Scope
from tests.pricing.build_golden import CATALOG, CUR, WED_10

STORE = Store(id="store-1", currency=CUR, utc_offset_min=60)


def snap(*promos: dict[str, Any]) -> PromotionSnapshot:
    return PromotionSnapshot.model_validate(
        {"version": 3, "currency": CUR, "promotions": list(promos)}
    )


def basket(*lines: tuple[str, str, int], **kw: Any) -> Basket:
    return Basket(
        currency=CUR, lines=tuple(Line(line_id=i, sku=s, qty=q) for i, s, q in lines), **kw
    )


def run(
    b: Basket,
    s: PromotionSnapshot,
    member: Member | None = None,
    now: int = WED_10,
    store: Store = STORE,
):
    return price(b, CATALOG, compile(s), member, now, store)


def test_records_engine_version_and_hashes() -> None:
    s = snap({"kind": "markdown", "id": "m", "scope": {"skus": ["milk"]}, "percent_bp": 1000})
    r = run(basket(("1", "milk", 1)), s)
    assert r.engine_version == ENGINE_VERSION
    assert (r.ruleset_version, r.ruleset_hash) == (3, s.ruleset_hash())
    assert (r.catalog_version, r.catalog_hash) == (7, CATALOG.ruleset_hash())
    assert r.applied[0].line_ids == ("1",) and r.applied[0].amount == 20


def test_pure_same_inputs_same_output_inputs_untouched() -> None:
    s = snap({"kind": "threshold", "id": "t", "amount_off": 7})
    b = basket(("1", "milk", 2), ("2", "bread", 1))
    before = b.model_dump()
    assert run(b, s) == run(b, s)
    assert b.model_dump() == before


def test_month_day_and_store_conditions() -> None:
    s = snap(
        {"kind": "threshold", "id": "seventh", "amount_off": 10, "conditions": {"month_days": [7]}},
        {
            "kind": "threshold",
            "id": "other-store",
            "amount_off": 5,
            "conditions": {"stores": ["store-9"]},
        },
    )
    r = run(basket(("1", "coffee", 1)), s)
    assert [a.promotion_id for a in r.applied] == ["seventh"]
    # 2026-01-06 23:30 UTC is the 7th at UTC+1 but the 6th at UTC-5
    late = WED_10 - 9 * 3_600_000 - 1_800_000
    assert run(basket(("1", "coffee", 1)), s, now=late).total == 889
    west = Store(id="store-1", currency=CUR, utc_offset_min=-300)
    assert run(basket(("1", "coffee", 1)), s, now=late, store=west).total == 899


def test_thresholds_repeatable_versus_once() -> None:
    once = snap({"kind": "threshold", "id": "t", "min_spend": 200, "amount_off": 10})
    rep = snap({"kind": "threshold", "id": "t", "min_spend": 200, "amount_off": 10, "repeat": True})
    b = basket(("1", "coffee", 1))  # 899 = 4 multiples of 200
    assert run(b, once).discount == 10
    assert run(b, rep).discount == 40


def test_exclusive_group_on_a_line_versus_combinable() -> None:
    a = {"kind": "threshold", "id": "a", "amount_off": 10, "group": "g"}
    b = {"kind": "threshold", "id": "b", "amount_off": 20, "group": "g"}
    assert run(basket(("1", "coffee", 1)), snap(a, b)).discount == 20
    assert run(basket(("1", "coffee", 1)), snap(a, {**b, "group": "h"})).discount == 30
    only_g = {**b, "group": "h", "combines_with": ["g"]}
    assert run(basket(("1", "coffee", 1)), snap(a, only_g)).discount == 30
    picky = {**b, "group": "h", "combines_with": ["x"]}
    assert run(basket(("1", "coffee", 1)), snap(a, picky)).discount == 20


def test_stored_value_cap_by_balance_and_share() -> None:
    s = snap({"kind": "stored_value_tender", "id": "sv", "max_share_bp": 2500})
    m = Member(id="m", currency=CUR, stored_value_balance=150)
    b = basket(("1", "coffee", 1), stored_value_to_use=1000)
    assert run(b, s, m).stored_value == 150  # balance
    m2 = m.model_copy(update={"stored_value_balance": 10_000})
    assert (
        run(b, s, m2).stored_value == 224
    )  # 25% of 899 = 224.75, floored: a cap is never exceeded


def test_points_tender_rate_and_balance() -> None:
    s = snap({"kind": "points_tender", "id": "p", "block_points": 1000, "block_minor": 500})
    m = Member(id="m", currency=CUR, points_balance=2500)
    r = run(basket(("1", "coffee", 1), points_to_redeem=5000), s, m)
    # balance allows 2 blocks, but 2 blocks would pay 1000 > 899: one block, 1000 points
    assert (r.points_used, r.points_value, r.paid) == (1000, 500, 399)


def test_unknown_sku() -> None:
    with pytest.raises(UnknownSku) as err:
        run(basket(("1", "caviar", 1)), snap())
    assert err.value.sku == "caviar" and err.value.line_id == "1"


@pytest.mark.parametrize("where", ["catalog", "promotions", "store", "member"])
def test_currency_mismatch(where: str) -> None:
    b = basket(("1", "milk", 1))
    s, store, member = snap(), STORE, Member(id="m", currency=CUR)
    catalog = CATALOG
    if where == "catalog":
        catalog = CATALOG.model_copy(update={"currency": "USD"})
    elif where == "promotions":
        s = PromotionSnapshot(version=1, currency="USD")
    elif where == "store":
        store = Store(id="s", currency="USD")
    else:
        member = Member(id="m", currency="USD")
    with pytest.raises(CurrencyMismatch) as err:
        price(b, catalog, s, member, WED_10, store)
    assert err.value.where == where and err.value.expected == CUR


def test_duplicate_line_ids() -> None:
    with pytest.raises(InvalidBasket):
        run(basket(("1", "milk", 1), ("1", "bread", 1)), snap())


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"version": 1, "currency": "EUR", "promotions": [{"kind": "nope", "id": "x"}]}',
        '{"version": 1, "currency": "EUR", "promotions": [{"kind": "markdown", "id": "x",'
        ' "scope": {}, "amount_off": 5.0}]}',
        '{"version": 1, "currency": "EUR", "promotions": [{"kind": "threshold", "id": "x",'
        ' "amount_off": 5}, {"kind": "threshold", "id": "x", "amount_off": 6}]}',
    ],
)
def test_invalid_snapshots(text: str) -> None:
    with pytest.raises(InvalidPromotion):
        load_snapshot(text)


def test_invalid_promotion_shapes() -> None:
    with pytest.raises(ValidationError):
        Markdown(id="m", scope=Scope(), percent_bp=100, amount_off=5)
    for bad in (
        {"kind": "tier_price", "id": "t", "scope": {}, "percent_bp": 100},
        {"kind": "threshold", "id": "t", "percent_bp": 100, "min_spend": 5, "repeat": True},
        {"kind": "gift", "id": "g", "trigger": {"skus": ["a"]}, "gift_sku": "b"},
        {
            "kind": "buy_x_get_y",
            "id": "b",
            "buy": {"skus": ["a"]},
            "buy_qty": 1,
            "get": {"skus": ["a"]},
        },
    ):
        with pytest.raises(ValidationError):
            snap(bad)
    with pytest.raises(InvalidPromotion):
        compile([])
    assert issubclass(InvalidPromotion, PricingError)


def test_refund_partial_and_errors() -> None:
    s = snap({"kind": "threshold", "id": "t", "amount_off": 100})
    r = run(basket(("1", "cola", 3)), s)  # 450 - 100 = 350
    first = refund(r, {"1": 1})
    second = refund(r, {"1": 2}, already_returned={"1": 1})
    assert (first.amount, second.amount) == (116, 234)  # floor(350/3) then the rest
    assert first.lines[0].discounts[0].amount + second.lines[0].discounts[0].amount == 100
    with pytest.raises(InvalidRefund):
        refund(r, {"1": 4})
    with pytest.raises(InvalidRefund):
        refund(r, {"9": 1})
    with pytest.raises(InvalidRefund):
        refund(r, {"1": 1}, already_returned={"1": 3})
