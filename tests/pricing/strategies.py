"""Hypothesis strategies: baskets and promotion snapshots over the golden catalog."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from pricing import Basket, Line, Member, PromotionSnapshot, Store
from tests.pricing.build_golden import CATALOG, CUR, STORE, WED_10

SKUS = sorted(CATALOG.items)
CATS = sorted({i.category for i in CATALOG.items.values()})
GROUPS = ["", "", "g1", "g2", "g3"]

ids = st.integers(0, 10_000)


@st.composite
def scopes(draw: st.DrawFn) -> dict[str, Any]:
    pick = draw(st.integers(0, 2))
    if pick == 0:
        return {}
    if pick == 1:
        return {"skus": draw(st.lists(st.sampled_from(SKUS), min_size=1, max_size=3, unique=True))}
    return {
        "categories": draw(st.lists(st.sampled_from(CATS), min_size=1, max_size=2, unique=True))
    }


@st.composite
def benefit(draw: st.DrawFn, *, new_price: bool = False) -> dict[str, Any]:
    pick = draw(st.integers(0, 2 if new_price else 1))
    if pick == 0:
        return {"percent_bp": draw(st.integers(1, 10_000))}
    if pick == 1:
        return {"amount_off": draw(st.integers(1, 1_500))}
    return {"new_price": draw(st.integers(0, 1_000))}


@st.composite
def promotion(draw: st.DrawFn, n: int) -> dict[str, Any]:
    common: dict[str, Any] = {
        "id": f"p{n:02d}",
        "priority": draw(st.integers(0, 3)),
        "group": draw(st.sampled_from(GROUPS)),
        "combines_with": draw(st.sampled_from([["*"], [], ["g1"], ["g1", "g2"]])),
    }
    if draw(st.integers(0, 4)) == 0:
        common["conditions"] = {"member_only": True}
    kind = draw(
        st.sampled_from(
            ["markdown", "tier", "bxgy", "bxgy_other", "bundle", "gift", "threshold", "coupon"]
        )
    )
    if kind == "markdown":
        return {
            "kind": "markdown",
            "scope": draw(scopes()),
            **draw(benefit(new_price=True)),
            **common,
        }
    if kind == "tier":
        common["conditions"] = {"tiers": ["gold"]}
        return {
            "kind": "tier_price",
            "scope": draw(scopes()),
            **draw(benefit(new_price=True)),
            **common,
        }
    if kind == "bxgy":
        return {
            "kind": "buy_x_get_y",
            "buy": draw(scopes()),
            "buy_qty": draw(st.integers(1, 3)),
            "get_qty": draw(st.integers(1, 2)),
            "get_percent_bp": draw(st.integers(1, 10_000)),
            "repeat": draw(st.booleans()),
            **common,
        }
    if kind == "bxgy_other":
        a, b = draw(st.lists(st.sampled_from(SKUS), min_size=2, max_size=2, unique=True))
        return {
            "kind": "buy_x_get_y",
            "buy": {"skus": [a]},
            "buy_qty": draw(st.integers(1, 2)),
            "get": {"skus": [b]},
            **common,
        }
    if kind == "bundle":
        comps = draw(st.lists(st.tuples(scopes(), st.integers(1, 3)), min_size=1, max_size=3))
        return {
            "kind": "bundle",
            "components": [{"scope": s, "qty": q} for s, q in comps],
            "price": draw(st.integers(0, 3_000)),
            "repeat": draw(st.booleans()),
            **common,
        }
    if kind == "gift":
        a, b = draw(st.lists(st.sampled_from(SKUS), min_size=2, max_size=2, unique=True))
        return {
            "kind": "gift",
            "trigger": {"skus": [a]},
            "min_qty": 1,
            "gift_sku": b,
            "gift_qty": draw(st.integers(1, 2)),
            "repeat": draw(st.booleans()),
            **common,
        }
    if kind == "threshold":
        if draw(st.booleans()):
            return {
                "kind": "threshold",
                "scope": draw(scopes()),
                "amount_off": draw(st.integers(1, 900)),
                "min_spend": draw(st.integers(1, 3_000)),
                "repeat": draw(st.booleans()),
                **common,
            }
        return {
            "kind": "threshold",
            "scope": draw(scopes()),
            "percent_bp": draw(st.integers(1, 10_000)),
            "min_spend": draw(st.integers(0, 3_000)),
            **common,
        }
    extra: dict[str, Any] = {}
    if draw(st.booleans()):
        extra["max_units"] = draw(st.integers(1, 4))
    return {
        "kind": "coupon",
        "code": draw(st.sampled_from(["A", "B"])),
        "scope": draw(scopes()),
        **draw(benefit()),
        "min_spend": draw(st.integers(0, 2_000)),
        **extra,
        **common,
    }


@st.composite
def snapshots(draw: st.DrawFn) -> PromotionSnapshot:
    n = draw(st.integers(0, 8))
    promos = [draw(promotion(k)) for k in range(n)]
    promos.append(
        {"kind": "points_earn", "id": "earn", "points": draw(st.integers(1, 5)), "per_minor": 100}
    )
    promos.append(
        {
            "kind": "points_tender",
            "id": "pts",
            "block_points": draw(st.sampled_from([1, 100])),
            "block_minor": draw(st.sampled_from([1, 50, 100])),
            "max_share_bp": draw(st.integers(0, 10_000)),
        }
    )
    promos.append(
        {"kind": "stored_value_tender", "id": "sv", "max_share_bp": draw(st.integers(0, 10_000))}
    )
    return PromotionSnapshot.model_validate({"version": 1, "currency": CUR, "promotions": promos})


@st.composite
def baskets(draw: st.DrawFn) -> Basket:
    n = draw(st.integers(1, 8))
    lines = []
    for k in range(n):
        line: dict[str, Any] = {
            "line_id": f"L{k}",
            "sku": draw(st.sampled_from(SKUS)),
            "qty": draw(st.integers(1, 5)),
        }
        if draw(st.integers(0, 5)) == 0:
            line["unit_price"] = draw(st.integers(0, 2_000))
        lines.append(Line.model_validate(line))
    return Basket(
        id="b",
        currency=CUR,
        lines=tuple(lines),
        coupons=tuple(draw(st.lists(st.sampled_from(["A", "B", "X"]), max_size=2, unique=True))),
        points_to_redeem=draw(st.integers(0, 3_000)),
        stored_value_to_use=draw(st.integers(0, 3_000)),
    )


members = st.one_of(
    st.none(),
    st.builds(
        lambda tier, pts, sv: Member(
            id="m", tier=tier, currency=CUR, points_balance=pts, stored_value_balance=sv
        ),
        st.sampled_from([None, "gold"]),
        st.integers(0, 5_000),
        st.integers(0, 5_000),
    ),
)
STORE_MODEL = Store.model_validate(STORE)
NOW = WED_10
