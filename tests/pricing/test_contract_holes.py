"""Promotions that could never apply, and refunds of units that are not whole numbers,
are refused with typed pricing errors naming what is wrong (issue 11)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from pricing import InvalidPromotion, InvalidRefund, Promotion, check_promotion, refund
from tests.pricing.test_rules import basket, run, snap

PROMOTION: TypeAdapter[Promotion] = TypeAdapter(Promotion)


def promo(**conditions: Any) -> Promotion:
    return PROMOTION.validate_python({"kind": "markdown", "id": "m", "percent_bp": 1_000,
                                      "scope": {"skus": ["milk"]}, "conditions": conditions})


@pytest.mark.parametrize(("conditions", "field"), [
    ({"valid_from_ms": 2_000, "valid_until_ms": 2_000}, "conditions.valid_until_ms"),
    ({"valid_from_ms": 2_000, "valid_until_ms": 1_000}, "conditions.valid_until_ms"),
    ({"time_from_min": 600, "time_until_min": 600}, "conditions.time_until_min"),
    ({"time_from_min": 0, "time_until_min": 0}, "conditions.time_until_min"),
])
def test_a_promotion_that_can_never_apply_is_refused_naming_the_field(
        conditions: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidPromotion) as caught:
        check_promotion(promo(**conditions))
    assert caught.value.field == field
    assert caught.value.promotion_id == "m"
    assert field in str(caught.value)


@pytest.mark.parametrize("conditions", [
    {},
    {"valid_from_ms": 1_000, "valid_until_ms": 1_001},
    {"valid_until_ms": 5},
    {"time_from_min": 0, "time_until_min": 1440},   # the whole day
    {"time_from_min": 1320, "time_until_min": 120},  # wraps midnight
])
def test_a_promotion_that_can_apply_passes(conditions: dict[str, int]) -> None:
    p = promo(**conditions)
    assert check_promotion(p) is p


@pytest.mark.parametrize("units", [1.5, "1", True, None])
def test_refund_of_units_that_are_not_whole_numbers_is_refused(units: object) -> None:
    r = run(basket(("1", "cola", 3)), snap())
    with pytest.raises(InvalidRefund) as caught:
        refund(r, {"1": units})  # type: ignore[dict-item]
    assert caught.value.line_id == "1"
    assert "whole number" in caught.value.reason
    with pytest.raises(InvalidRefund):
        refund(r, {"1": 1}, already_returned={"1": 0.5})  # type: ignore[dict-item]
    # Whole units still refund exactly, in integer money.
    back = refund(r, {"1": 1})
    assert isinstance(back.amount, int) and back.amount == r.lines[0].paid // 3
