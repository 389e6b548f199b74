"""The parts a box reports (decision 0050): what each consumer took and since when,
kept across an agent restart so "since" is when the version was first taken."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cloud.promotions.signing import SnapshotSigner
from edge_agent.modules.content import Content
from protocols.content import LabelCounts
from tests.edge_agent.helpers import make_config, running_agent, wait_until
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


def content_settings() -> dict[str, object]:
    key = SnapshotSigner.generate().public_keys()[0]["public_key"]
    # no cloud here: nothing is published, the parts are reported by the consumers
    return {"cloud_api": "http://127.0.0.1:9", "trusted_keys": [key], "release_keys": [key]}


async def test_a_part_keeps_its_since_across_a_restart(
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]) -> None:
    broker = mosquitto_factory()
    config = make_config(tmp_path, uplink=broker, local=None,
                         modules={"content": content_settings()})
    async with running_agent(config) as agent:
        content = agent.get(Content)
        content.report_part("pricebook", 7, applied_ms=1_000)
        content.report_part("pricebook", 7, applied_ms=2_000)  # the same version again
        content.report_labels(LabelCounts(current=3, pending=1))
        with pytest.raises(ValueError, match="unknown content part"):
            content.report_part("posters", 1, applied_ms=1)
        saved = config.data_dir / "content" / "parts.json"
        await wait_until(saved.exists, what="parts saved")
        assert content.diagnostics()["parts"]["pricebook"]["applied_ms"] == 1_000
        assert content.diagnostics()["labels"] == {"current": 3, "pending": 1, "stale": 0}

    async with running_agent(config) as agent:  # restarted: the till reports its book again
        content = agent.get(Content)
        content.report_part("pricebook", 7, applied_ms=50_000)
        assert content.diagnostics()["parts"]["pricebook"]["applied_ms"] == 1_000
        content.report_part("pricebook", 8, applied_ms=60_000)  # a new book: a new since
        assert content.diagnostics()["parts"]["pricebook"] == {
            "version": "8", "applied_ms": 60_000, "detail": ""}
