"""Writes ``golden/*.json`` from the hand-checked cases below.

    python -m tests.pricing.build_golden

The expected numbers here were worked out by hand (the ``why`` of each case shows the
arithmetic), not copied from the engine; the JSON files are the corpus of record.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pricing import Catalog, Item
from pricing.model import dump

OUT = Path(__file__).parent / "golden"
CUR = "EUR"
OFFSET = 60  # store is UTC+1

CATALOG = Catalog.of(
    [
        Item(sku="milk", category="dairy", price=199),
        Item(sku="yogurt", category="dairy", price=89),
        Item(sku="cheese", category="dairy", price=599),
        Item(sku="bread", category="bakery", price=250),
        Item(sku="croissant", category="bakery", price=120),
        Item(sku="coffee", category="drinks", price=899),
        Item(sku="cola", category="drinks", price=150),
        Item(sku="water", category="drinks", price=60),
        Item(sku="chips", category="snacks", price=175),
        Item(sku="tobacco", category="tobacco", price=1000, earns_points=False),
        Item(sku="mug", category="gifts", price=500),
        Item(sku="banana", category="produce", price=30),
    ],
    version=7,
    currency=CUR,
)


def utc_ms(y: int, mo: int, d: int, h: int, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp() * 1000)


WED_10 = utc_ms(2026, 1, 7, 9)  # Wednesday 2026-01-07 10:00 store-local
TUE_10 = utc_ms(2026, 1, 6, 9)  # Tuesday 10:00 local
TUE_2330_UTC = utc_ms(2026, 1, 6, 23, 30)  # Tuesday in UTC, Wednesday 00:30 local
HOUR = 3_600_000
STORE = {"id": "store-1", "currency": CUR, "utc_offset_min": OFFSET}
GOLD = {
    "id": "m-gold",
    "tier": "gold",
    "currency": CUR,
    "points_balance": 1000,
    "stored_value_balance": 300,
}
SILVER = {**GOLD, "id": "m-silver", "tier": "silver"}
BASIC = {**GOLD, "id": "m-basic", "tier": None}

CASES: list[dict[str, Any]] = []


def case(
    name: str,
    why: str,
    lines: list[tuple[Any, ...]],
    promos: list[dict[str, Any]],
    expected: dict[str, Any],
    *,
    member: dict[str, Any] | None = None,
    now: int = WED_10,
    coupons: tuple[str, ...] = (),
    points: int = 0,
    stored_value: int = 0,
) -> None:
    expected = dict(expected)
    # derived from the hand numbers above, not from the engine: a one-line basket's net is
    # its total, and a ruleset with no points_earn rule earns nothing
    if len(lines) == 1 and "total" in expected and "lines" not in expected:
        expected["lines"] = {lines[0][0]: {"net": expected["total"]}}
    if not any(p["kind"] == "points_earn" for p in promos):
        expected.setdefault("points_earned", 0)
    basket_lines = []
    for spec in lines:
        line: dict[str, Any] = {"line_id": spec[0], "sku": spec[1], "qty": spec[2]}
        if len(spec) > 3:
            line.update(spec[3])
        basket_lines.append(line)
    CASES.append(
        {
            "name": name,
            "why": why,
            "input": {
                "basket": {
                    "id": name,
                    "currency": CUR,
                    "lines": basket_lines,
                    "coupons": list(coupons),
                    "points_to_redeem": points,
                    "stored_value_to_use": stored_value,
                },
                "catalog": dump(CATALOG),
                "promotions": {"version": 1, "currency": CUR, "promotions": promos},
                "member": member,
                "now": now,
                "store": STORE,
            },
            "expected": expected,
        }
    )


def md(pid: str, scope: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"kind": "markdown", "id": pid, "scope": scope, **kw}


def thr(pid: str, **kw: Any) -> dict[str, Any]:
    return {"kind": "threshold", "id": pid, **kw}


def cpn(pid: str, code: str, **kw: Any) -> dict[str, Any]:
    return {"kind": "coupon", "id": pid, "code": code, **kw}


def bxgy(pid: str, buy: dict[str, Any], buy_qty: int, **kw: Any) -> dict[str, Any]:
    return {"kind": "buy_x_get_y", "id": pid, "buy": buy, "buy_qty": buy_qty, **kw}


def bundle(
    pid: str, comps: list[tuple[dict[str, Any], int]], price: int, **kw: Any
) -> dict[str, Any]:
    return {
        "kind": "bundle",
        "id": pid,
        "components": [{"scope": s, "qty": q} for s, q in comps],
        "price": price,
        **kw,
    }


def skus(*s: str) -> dict[str, Any]:
    return {"skus": list(s)}


def cats(*c: str) -> dict[str, Any]:
    return {"categories": list(c)}


EARN = {"kind": "points_earn", "id": "earn", "points": 1, "per_minor": 100}
PTS = {"kind": "points_tender", "id": "points", "block_points": 100, "block_minor": 100}
SV = {"kind": "stored_value_tender", "id": "sv"}

# --- plain and markdowns -----------------------------------------------------------
case(
    "000-no-promotions",
    "2 x 199 + 250 = 648, nothing to discount",
    [("1", "milk", 2), ("2", "bread", 1)],
    [],
    {"subtotal": 648, "total": 648, "discount": 0},
)
case(
    "001-markdown-percent",
    "10% of 199 = 19.9 -> 20 per unit (half-up), 179 x 3 = 537",
    [("1", "milk", 3)],
    [md("md", skus("milk"), percent_bp=1000)],
    {"total": 537, "lines": {"1": {"net": 537, "discounts": {"md": 60}}}},
)
case(
    "002-markdown-amount",
    "50 off 250 per unit: 200 x 2 = 400",
    [("1", "bread", 2)],
    [md("md", skus("bread"), amount_off=50)],
    {"total": 400, "discount": 100},
)
case(
    "003-markdown-new-price",
    "cheese re-priced to 499: discount 100",
    [("1", "cheese", 1)],
    [md("md", skus("cheese"), new_price=499)],
    {"total": 499},
)
case(
    "004-markdown-floor-zero",
    "50 off a 30 banana stops at 0: 3 x 0, discount 90",
    [("1", "banana", 3)],
    [md("md", skus("banana"), amount_off=50)],
    {"total": 0, "discount": 90},
)
case(
    "005-best-of-two-markdowns",
    "10% gives 179, 25 off gives 174: the lower wins",
    [("1", "milk", 1)],
    [md("md-a-pct", skus("milk"), percent_bp=1000), md("md-b-amt", skus("milk"), amount_off=25)],
    {"total": 174, "applied": ["md-b-amt"]},
)
case(
    "006-category-markdown",
    "15% dairy: milk 199-30(29.85)=169, yogurt 89-13(13.35)=76 x2; 169+152",
    [("1", "milk", 1), ("2", "yogurt", 2)],
    [md("md", cats("dairy"), percent_bp=1500)],
    {"total": 321, "lines": {"1": {"net": 169}, "2": {"net": 152, "discounts": {"md": 26}}}},
)
case(
    "007-markdown-exclusion",
    "dairy 15% excluding cheese: 599 + 169 = 768",
    [("1", "cheese", 1), ("2", "milk", 1)],
    [md("md", {"categories": ["dairy"], "exclude_skus": ["cheese"]}, percent_bp=1500)],
    {"total": 768, "lines": {"1": {"net": 599, "discounts": {}}}},
)
case(
    "008-near-expiry",
    "lot expiring in 12 h gets 50% (89-45(44.5)=44), lot in 48 h does not: 44+89",
    [
        ("1", "yogurt", 1, {"best_before_ms": WED_10 + 12 * HOUR}),
        ("2", "yogurt", 1, {"best_before_ms": WED_10 + 48 * HOUR}),
    ],
    [md("ne", skus("yogurt"), percent_bp=5000, near_expiry_within_min=1440)],
    {"total": 133, "lines": {"1": {"net": 44}, "2": {"net": 89}}},
)
case(
    "009-near-expiry-no-date",
    "no best-before on the line: the near-expiry markdown cannot apply",
    [("1", "yogurt", 1)],
    [md("ne", skus("yogurt"), percent_bp=5000, near_expiry_within_min=1440)],
    {"total": 89, "applied": []},
)
case(
    "010-markdown-expired-window",
    "valid_until is before now: full price 199",
    [("1", "milk", 1)],
    [md("md", skus("milk"), percent_bp=1000, conditions={"valid_until_ms": WED_10 - 1})],
    {"total": 199},
)
case(
    "011-markdown-inside-window",
    "now inside [from, until): 199 -> 179",
    [("1", "milk", 1)],
    [
        md(
            "md",
            skus("milk"),
            percent_bp=1000,
            conditions={"valid_from_ms": WED_10 - HOUR, "valid_until_ms": WED_10 + HOUR},
        )
    ],
    {"total": 179},
)
case(
    "012-half-up-rounding",
    "5% of 30 = 1.5 -> 2 per unit (half-up): 28 x 3 = 84",
    [("1", "banana", 3)],
    [md("md", skus("banana"), percent_bp=500)],
    {"total": 84, "discount": 6},
)
case(
    "013-price-override",
    "scale label price 420 replaces catalog 599; 10% -> 420-42 = 378",
    [("1", "cheese", 1, {"unit_price": 420})],
    [md("md", skus("cheese"), percent_bp=1000)],
    {"subtotal": 420, "total": 378},
)

# --- member tier --------------------------------------------------------------------
TIER_CHEESE = {
    "kind": "tier_price",
    "id": "tier",
    "scope": skus("cheese"),
    "new_price": 549,
    "conditions": {"tiers": ["gold"]},
}
case(
    "020-tier-price-gold",
    "gold member price 549 instead of 599",
    [("1", "cheese", 1)],
    [TIER_CHEESE],
    {"total": 549, "applied": ["tier"]},
    member=GOLD,
)
case(
    "021-tier-price-silver",
    "silver is not a listed tier: 599",
    [("1", "cheese", 1)],
    [TIER_CHEESE],
    {"total": 599},
    member=SILVER,
)
case(
    "022-tier-price-anonymous",
    "no member, no tier price: 599",
    [("1", "cheese", 1)],
    [TIER_CHEESE],
    {"total": 599},
)
case(
    "023-tier-percent-category",
    "gold 10% bakery: bread 225, croissant 108 x 2 = 216; 441",
    [("1", "bread", 1), ("2", "croissant", 2)],
    [
        {
            "kind": "tier_price",
            "id": "tier",
            "scope": cats("bakery"),
            "percent_bp": 1000,
            "conditions": {"tiers": ["gold"]},
        }
    ],
    {"total": 441},
    member=GOLD,
)
case(
    "024-markdown-then-tier",
    "100 off -> 799, then gold 10% of 799 = 79.9 -> 80: 719",
    [("1", "coffee", 1)],
    [
        md("md", skus("coffee"), amount_off=100),
        {
            "kind": "tier_price",
            "id": "tier",
            "scope": skus("coffee"),
            "percent_bp": 1000,
            "conditions": {"tiers": ["gold"]},
        },
    ],
    {"total": 719, "lines": {"1": {"discounts": {"md": 100, "tier": 80}}}},
    member=GOLD,
)
case(
    "025-tier-excludes-markdown-md-wins",
    "not combinable: markdown alone 799 beats tier alone 809",
    [("1", "coffee", 1)],
    [
        md("md", skus("coffee"), amount_off=100),
        {
            "kind": "tier_price",
            "id": "tier",
            "scope": skus("coffee"),
            "percent_bp": 1000,
            "combines_with": [],
            "conditions": {"tiers": ["gold"]},
        },
    ],
    {"total": 799, "applied": ["md"]},
    member=GOLD,
)
case(
    "026-tier-excludes-markdown-tier-wins",
    "not combinable: tier 800 beats markdown 5% (899-45=854)",
    [("1", "coffee", 1)],
    [
        md("md", skus("coffee"), percent_bp=500),
        {
            "kind": "tier_price",
            "id": "tier",
            "scope": skus("coffee"),
            "new_price": 800,
            "combines_with": [],
            "conditions": {"tiers": ["gold"]},
        },
    ],
    {"total": 800, "applied": ["tier"]},
    member=GOLD,
)

# --- item promotions ----------------------------------------------------------------
B1G1_COLA = bxgy("b1g1", skus("cola"), 1)
case(
    "030-b1g1",
    "buy 1 get 1 on 2 colas: one free, 150",
    [("1", "cola", 2)],
    [B1G1_COLA],
    {"total": 150, "lines": {"1": {"discounts": {"b1g1": 150}}}},
)
case(
    "031-b1g1-odd",
    "3 colas make one set of 2; the third is full price: 450-150",
    [("1", "cola", 3)],
    [B1G1_COLA],
    {"total": 300},
)
case(
    "032-b1g1-repeat",
    "4 colas, 2 sets: 2 free, 300",
    [("1", "cola", 4)],
    [B1G1_COLA],
    {"total": 300},
)
case(
    "033-b1g1-once",
    "repeat off: 4 colas, one free: 600-150",
    [("1", "cola", 4)],
    [{**B1G1_COLA, "repeat": False}],
    {"total": 450},
)
case(
    "034-b1g1-max-applications",
    "6 colas, at most 2 sets: 900-300",
    [("1", "cola", 6)],
    [{**B1G1_COLA, "max_applications": 2}],
    {"total": 600},
)
case(
    "035-b2g1-cheapest-free",
    "coffee+cola+water is one set of 3, water (60) free; split 60 by 899/150/60 -> 49/8/3",
    [("1", "coffee", 1), ("2", "cola", 1), ("3", "water", 1)],
    [bxgy("b2g1", cats("drinks"), 2)],
    {"total": 1049, "lines": {"1": {"net": 850}, "2": {"net": 142}, "3": {"net": 57}}},
)
case(
    "036-b1g1-sets-dearest-first",
    "units 899,899,60,60 form sets (899,899) and (60,60): 899+60 free; 1918-959",
    [("1", "coffee", 2), ("2", "water", 2)],
    [bxgy("b1g1", cats("drinks"), 1)],
    {"total": 959, "lines": {"1": {"net": 899}, "2": {"net": 60}}},
)
case(
    "037-buy-coffee-get-mug",
    "mug (500) free with a coffee; split 500 by 899/500 -> 321/179",
    [("1", "coffee", 1), ("2", "mug", 1)],
    [bxgy("bxgy", skus("coffee"), 1, get=skus("mug"))],
    {"total": 899, "lines": {"1": {"net": 578}, "2": {"net": 321}}},
)
case(
    "038-buy-2-bread-croissant-half",
    "2 bread -> croissant 50% (60); split 60 by 500/120 -> 48/12",
    [("1", "bread", 2), ("2", "croissant", 1)],
    [bxgy("bxgy", skus("bread"), 2, get=skus("croissant"), get_percent_bp=5000)],
    {"total": 560, "lines": {"1": {"net": 452}, "2": {"net": 108}}},
)
case(
    "039-get-item-runs-out",
    "2 coffees earn 2 mugs but only 1 is scanned: 500 off, split over 1 coffee unit + mug",
    [("1", "coffee", 2), ("2", "mug", 1)],
    [bxgy("bxgy", skus("coffee"), 1, get=skus("mug"))],
    {"total": 1798, "lines": {"1": {"net": 1477}, "2": {"net": 321}}},
)
case(
    "040-combo",
    "coffee+chips for 900 (1074): 174 off split 175/899 -> 28/146",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [bundle("combo", [(skus("coffee"), 1), (skus("chips"), 1)], 900)],
    {"total": 900, "lines": {"1": {"net": 753}, "2": {"net": 147}}},
)
case(
    "041-three-for",
    "yogurt 3 for 200: 7 units = 2 sets (267 each, 67 off) + 1: 623-134",
    [("1", "yogurt", 7)],
    [bundle("3for", [(skus("yogurt"), 3)], 200)],
    {"total": 489},
)
case(
    "042-bundle-not-cheaper",
    "cola+chips for 400 costs more than 325: not formed",
    [("1", "cola", 1), ("2", "chips", 1)],
    [bundle("combo", [(skus("cola"), 1), (skus("chips"), 1)], 400)],
    {"total": 325, "applied": []},
)
case(
    "043-bundle-once",
    "3 for 200 once: 623-67",
    [("1", "yogurt", 7)],
    [bundle("3for", [(skus("yogurt"), 3)], 200, repeat=False)],
    {"total": 556},
)
GIFT_MUG = {
    "kind": "gift",
    "id": "gift",
    "trigger": skus("coffee"),
    "min_qty": 1,
    "gift_sku": "mug",
}
case(
    "044-gift",
    "coffee bought, mug scanned: mug free, 899",
    [("1", "coffee", 1), ("2", "mug", 1)],
    [GIFT_MUG],
    {"total": 899, "lines": {"2": {"net": 0, "discounts": {"gift": 500}}}},
)
case(
    "045-gift-no-trigger",
    "no coffee: mug + cola at full price, 650",
    [("1", "mug", 1), ("2", "cola", 1)],
    [GIFT_MUG],
    {"total": 650},
)
case(
    "046-gift-min-spend",
    "drinks 899+150=1049 >= 1000: mug free, 1049",
    [("1", "coffee", 1), ("2", "cola", 1), ("3", "mug", 1)],
    [
        {
            "kind": "gift",
            "id": "gift",
            "trigger": cats("drinks"),
            "min_spend": 1000,
            "gift_sku": "mug",
        }
    ],
    {"total": 1049},
)
case(
    "047-gift-not-scanned",
    "the gift is not in the basket: nothing to give, 899",
    [("1", "coffee", 1)],
    [GIFT_MUG],
    {"total": 899, "applied": []},
)
case(
    "048-b1g1-beats-bundle",
    "on the shared cola line: B1G1 150 off beats combo 75 off; 475-150",
    [("1", "cola", 2), ("2", "chips", 1)],
    [B1G1_COLA, bundle("combo", [(skus("cola"), 1), (skus("chips"), 1)], 250)],
    {"total": 325, "applied": ["b1g1"]},
)
case(
    "049-exhaustive-beats-greedy",
    "combo for 175 x2 = 300 conflicts with both B1G1s (150 + 175 = 325): the pair wins",
    [("1", "cola", 2), ("2", "chips", 2)],
    [
        B1G1_COLA,
        bxgy("b1g1-chips", skus("chips"), 1),
        bundle("combo", [(skus("cola"), 1), (skus("chips"), 1)], 175),
    ],
    {"total": 325, "applied": ["b1g1", "b1g1-chips"]},
)
case(
    "050-same-group-disjoint-lines",
    "same group but different lines: both B1G1 apply, 420-210",
    [("1", "cola", 2), ("2", "water", 2)],
    [{**B1G1_COLA, "group": "deals"}, {**bxgy("b1g1-water", skus("water"), 1), "group": "deals"}],
    {"total": 210},
)
case(
    "051-item-not-on-sale-items",
    "B1G1 combines with nothing: the marked-down cola (135) keeps 270",
    [("1", "cola", 2)],
    [md("md", skus("cola"), percent_bp=1000), {**B1G1_COLA, "combines_with": []}],
    {"total": 270, "applied": ["md"]},
)
case(
    "052-item-on-sale-items",
    "markdown to 135, then B1G1 frees one: 135",
    [("1", "cola", 2)],
    [md("md", skus("cola"), percent_bp=1000), B1G1_COLA],
    {"total": 135},
)

# --- basket thresholds ----------------------------------------------------------------
case(
    "060-threshold-once",
    "1074 >= 1000: 100 off split 175/899 -> 16/84",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [thr("t", min_spend=1000, amount_off=100)],
    {"total": 974, "lines": {"1": {"net": 815}, "2": {"net": 159}}},
)
case(
    "061-threshold-not-reached",
    "899 < 1000: nothing",
    [("1", "coffee", 1)],
    [thr("t", min_spend=1000, amount_off=100)],
    {"total": 899},
)
case(
    "062-threshold-repeat",
    "1948 has 3 multiples of 500: 150 off split 1798/150 -> 138/12",
    [("1", "coffee", 2), ("2", "cola", 1)],
    [thr("t", min_spend=500, amount_off=50, repeat=True)],
    {"total": 1798, "lines": {"1": {"net": 1660}, "2": {"net": 138}}},
)
case(
    "063-threshold-repeat-capped",
    "3 multiples but at most 2: 100 off, 1848",
    [("1", "coffee", 2), ("2", "cola", 1)],
    [thr("t", min_spend=500, amount_off=50, repeat=True, max_applications=2)],
    {"total": 1848},
)
case(
    "064-threshold-percent",
    "10% of 1074 = 107.4 -> 107: 967",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [thr("t", min_spend=1000, percent_bp=1000)],
    {"total": 967},
)
case(
    "065-threshold-category",
    "dairy 798 >= 300: 50 off dairy only, 599/199 -> 38/12; bread untouched",
    [("1", "milk", 1), ("2", "cheese", 1), ("3", "bread", 1)],
    [thr("t", scope=cats("dairy"), min_spend=300, amount_off=50)],
    {"total": 998, "lines": {"1": {"net": 187}, "2": {"net": 561}, "3": {"net": 250}}},
)
case(
    "066-threshold-after-item",
    "B1G1 leaves 150+175=325 >= 300: 30 off split 175/150 -> 16/14",
    [("1", "cola", 2), ("2", "chips", 1)],
    [B1G1_COLA, thr("t", min_spend=300, amount_off=30)],
    {"total": 295, "lines": {"1": {"net": 136}, "2": {"net": 159}}},
)
case(
    "067-item-drops-below-threshold",
    "360 gross but 210 after B1G1 < 300: no threshold",
    [("1", "cola", 2), ("2", "water", 1)],
    [B1G1_COLA, thr("t", min_spend=300, amount_off=30)],
    {"total": 210, "applied": ["b1g1"]},
)
MEMBER_DAY = thr("member-day", percent_bp=1000, conditions={"weekdays": [3], "member_only": True})
case(
    "068-member-day",
    "Wednesday, member: 10% of 899 = 89.9 -> 90: 809",
    [("1", "coffee", 1)],
    [MEMBER_DAY],
    {"total": 809},
    member=BASIC,
)
case(
    "069-member-day-tuesday",
    "Tuesday local: no member day, 899",
    [("1", "coffee", 1)],
    [MEMBER_DAY],
    {"total": 899},
    member=BASIC,
    now=TUE_10,
)
case(
    "070-member-day-store-local",
    "23:30 UTC Tuesday is 00:30 Wednesday at UTC+1: 809",
    [("1", "coffee", 1)],
    [MEMBER_DAY],
    {"total": 809},
    member=BASIC,
    now=TUE_2330_UTC,
)
case(
    "071-member-day-anonymous",
    "member day needs a member: 899",
    [("1", "coffee", 1)],
    [MEMBER_DAY],
    {"total": 899},
)
case(
    "072-same-group-best",
    "same group: 50 off vs 10% (107) of 1074: 107 wins, 967",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [
        thr("t-amt", min_spend=500, amount_off=50, group="basket"),
        thr("t-pct", percent_bp=1000, group="basket"),
    ],
    {"total": 967, "applied": ["t-pct"]},
)
case(
    "073-groups-stack",
    "different groups stack on 1074: 50 (8/42) then 107 (17/90): 917",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [thr("t-a", min_spend=500, amount_off=50, group="g1"), thr("t-b", percent_bp=1000, group="g2")],
    {
        "total": 917,
        "lines": {
            "1": {"net": 767, "discounts": {"t-a": 42, "t-b": 90}},
            "2": {"net": 150, "discounts": {"t-a": 8, "t-b": 17}},
        },
    },
)
case(
    "074-groups-do-not-combine",
    "t-b combines with nothing: best single, 107: 967",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [
        thr("t-a", min_spend=500, amount_off=50, group="g1"),
        thr("t-b", percent_bp=1000, group="g2", combines_with=[]),
    ],
    {"total": 967, "applied": ["t-b"]},
)
HAPPY = thr(
    "happy",
    scope=cats("drinks"),
    percent_bp=2000,
    conditions={"time_from_min": 17 * 60, "time_until_min": 19 * 60},
)
case(
    "075-happy-hour",
    "18:00 local is inside 17:00-19:00: 20% of 150 = 30: 120",
    [("1", "cola", 1)],
    [HAPPY],
    {"total": 120},
    now=utc_ms(2026, 1, 7, 17),
)
case(
    "076-happy-hour-before",
    "16:59 local is outside: 150",
    [("1", "cola", 1)],
    [HAPPY],
    {"total": 150},
    now=utc_ms(2026, 1, 7, 15, 59),
)
case(
    "077-window-over-midnight",
    "01:00 local is inside 22:00-02:00: 20% of 150: 120",
    [("1", "cola", 1)],
    [thr("late", percent_bp=2000, conditions={"time_from_min": 22 * 60, "time_until_min": 120})],
    {"total": 120},
    now=utc_ms(2026, 1, 7, 0),
)
case(
    "078-tie-lower-id",
    "equal 50 off in one group: tie goes to the lower id t-a",
    [("1", "coffee", 1)],
    [thr("t-b", amount_off=50, group="g"), thr("t-a", amount_off=50, group="g")],
    {"total": 849, "applied": ["t-a"]},
)
case(
    "079-tie-priority",
    "equal 50 off in one group: priority 10 beats the lower id",
    [("1", "coffee", 1)],
    [thr("t-b", amount_off=50, group="g", priority=10), thr("t-a", amount_off=50, group="g")],
    {"total": 849, "applied": ["t-b"]},
)
case(
    "080-remainder-tie",
    "1 off over two equal milk lines: remainder tie goes to line 1 (canonical)",
    [("2", "milk", 1), ("1", "milk", 1)],
    [thr("t", amount_off=1)],
    {"total": 397, "lines": {"1": {"net": 198}, "2": {"net": 199}}},
)

# --- coupons --------------------------------------------------------------------------
case(
    "090-coupon-amount",
    "100 off with min spend 500, code shown: 799",
    [("1", "coffee", 1)],
    [cpn("c", "SAVE", amount_off=100, min_spend=500)],
    {"total": 799},
    coupons=("SAVE",),
)
case(
    "091-coupon-not-shown",
    "code not presented: 899",
    [("1", "coffee", 1)],
    [cpn("c", "SAVE", amount_off=100)],
    {"total": 899, "rejected_coupons": []},
)
case(
    "092-coupon-unknown-code",
    "unknown code gives nothing and is reported",
    [("1", "coffee", 1)],
    [cpn("c", "SAVE", amount_off=100)],
    {"total": 899, "rejected_coupons": ["NOPE"]},
    coupons=("NOPE",),
)
case(
    "093-coupon-percent",
    "15% of 899 = 134.85 -> 135: 764",
    [("1", "coffee", 1)],
    [cpn("c", "P15", percent_bp=1500)],
    {"total": 764},
    coupons=("P15",),
)
case(
    "094-coupon-item-units",
    "100 off each of the 2 dearest drinks units (coffee, cola): 1349-200",
    [("1", "coffee", 1), ("2", "cola", 3)],
    [cpn("c", "ITEM", amount_off=100, max_units=2, scope=cats("drinks"))],
    {"total": 1149, "lines": {"1": {"net": 799}, "2": {"net": 350}}},
    coupons=("ITEM",),
)
case(
    "095-coupon-item-capped",
    "100 off per unit but water is 60: 2 x 60 = 120, net 0",
    [("1", "water", 2)],
    [cpn("c", "ITEM", amount_off=100, max_units=2)],
    {"total": 0},
    coupons=("ITEM",),
)
case(
    "096-coupon-threshold",
    "10% with min spend 1000 on 1074: 107 off, 967",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [cpn("c", "BIG", percent_bp=1000, min_spend=1000)],
    {"total": 967},
    coupons=("BIG",),
)
case(
    "097-coupon-threshold-missed",
    "899 < 1000: code rejected",
    [("1", "coffee", 1)],
    [cpn("c", "BIG", percent_bp=1000, min_spend=1000)],
    {"total": 899, "rejected_coupons": ["BIG"]},
    coupons=("BIG",),
)
case(
    "098-coupon-not-on-sale-items",
    "coupon combines with nothing: only chips (175) get 10% = 18: 799+157",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [md("md", skus("coffee"), amount_off=100), cpn("c", "TEN", percent_bp=1000, combines_with=[])],
    {"total": 956, "lines": {"1": {"net": 799}, "2": {"net": 157}}},
    coupons=("TEN",),
)
case(
    "099-coupons-same-group",
    "two codes, one group: 150 off beats 100 off; 749",
    [("1", "coffee", 1)],
    [cpn("c1", "A", amount_off=100, group="cpn"), cpn("c2", "B", amount_off=150, group="cpn")],
    {"total": 749, "applied": ["c2"], "rejected_coupons": ["A"]},
    coupons=("A", "B"),
)
case(
    "100-coupons-stack",
    "two codes, own groups: 100 + 150 off: 649",
    [("1", "coffee", 1)],
    [cpn("c1", "A", amount_off=100), cpn("c2", "B", amount_off=150)],
    {"total": 649},
    coupons=("A", "B"),
)
case(
    "101-coupon-after-threshold",
    "threshold 100 off 1074 -> 974, then 10% coupon of 974 = 97.4 -> 97: 877",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [thr("t", min_spend=1000, amount_off=100), cpn("c", "TEN", percent_bp=1000)],
    {"total": 877},
    coupons=("TEN",),
)

# --- tenders and points ---------------------------------------------------------------
case(
    "110-earn",
    "1 point per 100 on 1074: 10, split 175/899 -> 2/8",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [EARN],
    {"points_earned": 10, "lines": {"1": {"points_earned": 8}, "2": {"points_earned": 2}}},
    member=BASIC,
)
case(
    "111-earn-excluded-item",
    "tobacco earns nothing: 899 -> 8 points",
    [("1", "coffee", 1), ("2", "tobacco", 1)],
    [EARN],
    {"points_earned": 8, "lines": {"2": {"points_earned": 0}}},
    member=BASIC,
)
case(
    "112-earn-anonymous", "no member, no points", [("1", "coffee", 1)], [EARN], {"points_earned": 0}
)
case(
    "113-earn-gold-best-in-group",
    "gold rule (2 per 100) in the base rule's group: 1074*2//100 = 21",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [
        EARN,
        {
            "kind": "points_earn",
            "id": "earn-gold",
            "points": 2,
            "per_minor": 100,
            "group": "earn",
            "conditions": {"tiers": ["gold"]},
        },
    ],
    {"points_earned": 21},
    member=GOLD,
)
case(
    "114-stored-value-balance",
    "asks 500, balance 300: 300 paid, split 175/899 -> 49/251",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [SV],
    {
        "stored_value": 300,
        "paid": 774,
        "lines": {"1": {"stored_value": 251}, "2": {"stored_value": 49}},
    },
    member=GOLD,
    stored_value=500,
)
case(
    "115-stored-value-share-cap",
    "at most 50% of 1074 = 537",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [{**SV, "max_share_bp": 5000}],
    {"stored_value": 537, "paid": 537},
    member={**GOLD, "stored_value_balance": 5000},
    stored_value=1000,
)
case(
    "116-points-blocks",
    "350 asked -> 3 blocks of 100 = 300; earn on 1074-300 = 774 -> 7",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [PTS, EARN],
    {"points_used": 300, "points_value": 300, "paid": 774, "points_earned": 7},
    member=GOLD,
    points=350,
)
case(
    "117-points-minimum",
    "400 < min 500: no points used",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [{**PTS, "min_points": 500}],
    {"points_used": 0, "paid": 1074},
    member=GOLD,
    points=400,
)
case(
    "118-points-share-cap",
    "50% of 1074 = 537 allows 5 blocks: 500",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [{**PTS, "max_share_bp": 5000}],
    {"points_used": 500, "paid": 574},
    member=GOLD,
    points=1000,
)
case(
    "119-stored-value-then-points",
    "sv 800 of 1074 leaves 274: 2 blocks, 200; 74 paid",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [SV, PTS],
    {"stored_value": 800, "points_used": 200, "paid": 74},
    member={**GOLD, "stored_value_balance": 800},
    points=1000,
    stored_value=800,
)
case(
    "120-points-anonymous",
    "no member: tenders ignored, 1074 paid",
    [("1", "coffee", 1), ("2", "chips", 1)],
    [SV, PTS],
    {"paid": 1074},
    points=500,
    stored_value=100,
)

# --- everything at once ----------------------------------------------------------------
case(
    "130-full-basket",
    "milk md 179x3=537; b2g1 dairy frees 179 (156/23); spend 1000 -100 (14/58/28); "
    "5% coupon of 1706 = 85 (12/49/24); 200 points; earn 1421 -> 14",
    [("1", "milk", 3), ("2", "cheese", 2), ("3", "bread", 1)],
    [
        md("md-milk", skus("milk"), percent_bp=1000),
        bxgy("b2g1-dairy", cats("dairy"), 2),
        thr("spend10", min_spend=1000, amount_off=100),
        cpn("c5", "FIVE", percent_bp=500),
        EARN,
        {**PTS, "max_share_bp": 5000},
    ],
    {
        "subtotal": 2045,
        "total": 1621,
        "paid": 1421,
        "points_used": 200,
        "points_earned": 14,
        "lines": {
            "1": {
                "net": 462,
                "discounts": {"md-milk": 60, "b2g1-dairy": 23, "spend10": 28, "c5": 24},
            },
            "2": {"net": 935, "discounts": {"b2g1-dairy": 156, "spend10": 58, "c5": 49}},
            "3": {"net": 224, "discounts": {"spend10": 14, "c5": 12}},
        },
    },
    member=GOLD,
    coupons=("FIVE",),
    points=250,
)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    for c in CASES:
        (OUT / f"{c['name']}.json").write_text(json.dumps(c, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(CASES)} cases to {OUT}")


if __name__ == "__main__":
    main()
