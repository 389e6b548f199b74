"""The golden corpus: hand-checked baskets every pricing runtime must reproduce.

Each ``golden/*.json`` file holds one case::

    {"name": ..., "why": "<one line: why the expected numbers are right>",
     "input": {"basket": ..., "catalog": ..., "promotions": <PromotionSnapshot>,
               "member": ... | null, "now": <UTC epoch ms>, "store": ...},
     "expected": {"total": ..., "subtotal": ..., "paid": ..., "points_earned": ...,
                  "lines": {"<line id>": {"net": ..., "discounts": {"<promo id>": ...}}},
                  "applied": [...], "rejected_coupons": [...]}}

Only the keys present under ``expected`` are checked (a line's ``discounts``, when given,
must match exactly). Other runtimes (cloud re-pricing, the edge POS, the cart screen)
import ``replay_golden`` and pass their own price function::

    from tests.pricing.golden import replay_golden
    replay_golden(my_price)   # raises AssertionError listing every mismatch
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pricing import Basket, Catalog, Member, PromotionSnapshot, Store

GOLDEN_DIR = Path(__file__).parent / "golden"


@dataclass(frozen=True)
class GoldenCase:
    name: str
    why: str
    basket: Basket
    catalog: Catalog
    promotions: PromotionSnapshot
    member: Member | None
    now: int
    store: Store
    expected: dict[str, Any]
    path: Path


def load_cases(directory: Path = GOLDEN_DIR) -> list[GoldenCase]:
    cases = []
    for path in sorted(directory.glob("*.json")):
        raw = json.loads(path.read_text())
        inp = raw["input"]
        cases.append(
            GoldenCase(
                name=raw["name"],
                why=raw["why"],
                basket=Basket.model_validate(inp["basket"]),
                catalog=Catalog.model_validate(inp["catalog"]),
                promotions=PromotionSnapshot.model_validate(inp["promotions"]),
                member=None if inp["member"] is None else Member.model_validate(inp["member"]),
                now=inp["now"],
                store=Store.model_validate(inp["store"]),
                expected=raw["expected"],
                path=path,
            )
        )
    return cases


PriceFn = Callable[[Basket, Catalog, PromotionSnapshot, Member | None, int, Store], Any]


def check_case(case: GoldenCase, result: Any) -> Iterator[str]:
    """Mismatches between ``result`` (a PricedBasket or its ``to_dict()``) and the case."""
    got = result if isinstance(result, dict) else result.to_dict()
    exp = case.expected
    for key, want in exp.items():
        if key == "lines":
            lines = {ln["line_id"]: ln for ln in got["lines"]}
            for line_id, fields in want.items():
                line = lines.get(line_id)
                if line is None:
                    yield f"line {line_id}: missing"
                    continue
                for field, value in fields.items():
                    have = line[field]
                    if field == "discounts":
                        have = {a["promotion_id"]: a["amount"] for a in have}
                    if have != value:
                        yield f"line {line_id} {field}: expected {value}, got {have}"
        elif key == "applied":
            have = sorted({a["promotion_id"] for a in got["applied"]})
            if have != sorted(want):
                yield f"applied: expected {sorted(want)}, got {have}"
        elif key == "rejected_coupons":
            if list(got[key]) != list(want):
                yield f"{key}: expected {want}, got {got[key]}"
        elif got[key] != want:
            yield f"{key}: expected {want}, got {got[key]}"


def replay_golden(price_fn: PriceFn, *, directory: Path = GOLDEN_DIR) -> int:
    """Price every golden case with ``price_fn``; raise listing all mismatches.

    ``price_fn(basket, catalog, snapshot, member, now, store)`` returns a ``PricedBasket``
    or a dict shaped like ``PricedBasket.to_dict()``. Returns the number of cases.
    """
    cases = load_cases(directory)
    problems: list[str] = []
    for case in cases:
        result = price_fn(
            case.basket, case.catalog, case.promotions, case.member, case.now, case.store
        )
        problems.extend(f"{case.path.name}: {p}" for p in check_case(case, result))
    if problems:
        raise AssertionError("golden corpus mismatches:\n" + "\n".join(problems))
    return len(cases)
