"""The golden corpus through both engine implementations (Python reference and compiled),
with compiled rulesets and raw snapshots."""

from __future__ import annotations

import json

import pytest

from pricing import PricedBasket, compile, price
from tests.pricing.engines import IMPLEMENTATIONS, engine_price
from tests.pricing.golden import check_case, load_cases, replay_golden

CASES = load_cases()


def test_corpus_is_big_enough_and_explained() -> None:
    assert len(CASES) >= 60
    assert all(c.why.strip() for c in CASES)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_replay_golden_with_snapshots(impl: str) -> None:
    assert replay_golden(engine_price(impl)) == len(CASES)


def test_replay_golden_reports_mismatches() -> None:
    def off_by_one(*args: object) -> dict[str, object]:
        d = price(*args).to_dict()  # type: ignore[arg-type]
        d["total"] += 1
        return d

    with pytest.raises(AssertionError, match="golden corpus mismatches"):
        replay_golden(off_by_one)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_with_compiled_ruleset(case, impl: str) -> None:
    result = engine_price(impl)(
        case.basket, case.catalog, compile(case.promotions), case.member, case.now, case.store
    )
    assert list(check_case(case, result)) == []
    assert result.ruleset_hash == case.promotions.ruleset_hash()
    assert result.catalog_hash == case.catalog.ruleset_hash()
    assert PricedBasket.from_dict(json.loads(result.to_json())) == result
