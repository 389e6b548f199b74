"""Trigger rules from the cloud's signed promotion snapshot: the store box takes the
installed document's rules over its configured ones, a desired-shadow override wins over
both, and a coupon issues from an HQ rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from cloud.db.models_loyalty import PromotionPublication
from cloud.promotions.service import store_document
from cloud.promotions.signing import SnapshotSigner
from edge_agent.cartscreen import SAMPLE_DATA, InAisle, InAisleSettings
from edge_agent.drivers.testing import FakeContext
from edge_agent.inference.triggers import Location
from edge_agent.pos.cache import CacheMetrics, PromotionCache, load_keys
from firmware_sim.layouts import DEFAULT_LAYOUT
from protocols.clock import ManualClock

BUNDLE = json.loads(SAMPLE_DATA.read_text())
HQ_RULE = {"id": "hq-snacks", "zone": "grocery", "dwell_ms": 0, "cooldown_ms": 0,
           "coupon": {"engine_code": "SNACK3", "title": "HQ: 3 off snacks"}}
SHADOW_RULE = {"id": "store-dairy", "zone": "dairy",
               "coupon": {"engine_code": "DAIRY10", "title": "10% off dairy"}}


def publication(version: int, rules: list[dict[str, Any]] | None) -> PromotionPublication:
    """The bundle's promotions as published, the snack coupon carrying ``rules``."""
    entries = []
    for p in BUNDLE["promotions"]["promotions"]:
        entry: dict[str, Any] = {"promotion": p, "stores": ["S001"], "channels": ["pos", "cart"]}
        if rules and p.get("code") == "SNACK3":
            entry["trigger_rules"] = rules
        entries.append(entry)
    return PromotionPublication(version=version, currency="CNY",
                                published_ms=1_767_225_600_000, entries=entries)


async def test_snapshot_rules_replace_config_and_the_shadow_overrides_both(
        tmp_path: Path) -> None:
    ctx = FakeContext(store_id="S001", clock=ManualClock(), registry=CollectorRegistry())
    signer = SnapshotSigner.generate()
    cache = PromotionCache(tmp_path / "pos" / "promotions.json", store_id="S001",
                           keys=load_keys([k["public_key"] for k in signer.public_keys()]),
                           metrics=CacheMetrics(ctx.registry))
    in_aisle = InAisle(InAisleSettings(store_id="S001", data_dir=tmp_path,
                                       store_layout=DEFAULT_LAYOUT, retail_data=SAMPLE_DATA),
                       ctx=ctx, carts=lambda: None, pos_promotions=cache)
    config_ids = [r["id"] for r in BUNDLE["trigger_rules"]]

    def running() -> list[str]:
        return sorted(r.id for r in in_aisle.engine.rules)

    await in_aisle.start()
    try:
        assert running() == sorted(config_ids) and in_aisle.rules.source == "config"
        # a snapshot without rules (HQ manages none yet): the configured rules stay
        assert await cache.install(store_document(publication(1, None), "S001", signer))
        assert await in_aisle.follow_snapshot_once()
        assert running() == sorted(config_ids) and in_aisle.rules.snapshot_version == 1

        # HQ attaches a rule to the snack coupon: v2 replaces the configured rules whole
        assert await cache.install(store_document(publication(2, [HQ_RULE]), "S001", signer))
        assert await in_aisle.follow_snapshot_once()
        assert running() == ["hq-snacks"] and in_aisle.rules.source == "snapshot"
        assert not await in_aisle.follow_snapshot_once()  # same version: nothing to do
        got = await in_aisle.triggers.handle_scan(
            "C1", session_id="s1", member_id=None, readings=[],
            location=Location(x=12.0, y=10.0, zone="grocery", shelf=None))
        assert [c.rule_id for c in got] == ["hq-snacks"]
        assert got[0].code.startswith("RDEMOSNK3-")  # from the SNACK3 code range

        # the store's desired shadow wins over the snapshot; null gives it back
        in_aisle.set_rules([SHADOW_RULE])
        assert running() == ["store-dairy"] and in_aisle.rules.source == "shadow"
        assert await cache.install(store_document(publication(3, [HQ_RULE]), "S001", signer))
        assert await in_aisle.follow_snapshot_once()
        assert running() == ["store-dairy"]  # a new snapshot does not undo the override
        in_aisle.set_rules(None)
        assert running() == ["hq-snacks"]

        # a tampered document on disk is refused: the rules in force stay
        doc = json.loads(cache.path.read_text())
        doc["payload"]["trigger_rules"]["rules"] = []
        doc["payload"]["version"] = 4
        cache.path.write_text(json.dumps(doc))
        in_aisle.rules.snapshot_version = None  # force a re-read
        assert not await in_aisle.follow_snapshot_once()
        assert running() == ["hq-snacks"]
    finally:
        await in_aisle.stop()
