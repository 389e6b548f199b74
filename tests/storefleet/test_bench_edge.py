"""``storefleet bench edge`` runs end to end and reports consistent figures: the agent in
its own process with every device family attached, its RSS and CPU sampled, then an
outage's events replayed from its outbox into the cloud, each stored exactly once (a
small run through the console script, not a measurement; the README's row is the
10-minute, 300-cart run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import find_mosquitto, unavailable

pytestmark = pytest.mark.mosquitto

STOREFLEET = Path(sys.executable).parent / "storefleet"
CARTS = 10
DURATION_S = 10
SAMPLE_S = 1
OUTAGE_EVENTS = 2_000
# what a demo store runs, as the cloud lists it (storefleet.demo_content.FAMILY_OF)
FAMILIES = ["audio", "beacons", "carts", "esl", "pos", "vending"]


@pytest.mark.timeout(600)  # a minute alone; several on a loaded CI machine
def test_bench_edge_samples_the_agent_and_replays_every_outage_event_once(
        tmp_path: Path) -> None:
    if find_mosquitto() is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where the run's data goes
    run = subprocess.run(
        [str(STOREFLEET), "bench", "edge", "--json", "--duration-s", str(DURATION_S),
         "--sample-s", str(SAMPLE_S), "--carts", str(CARTS),
         "--outage-events", str(OUTAGE_EVENTS), "--timeout-s", "120"],
        env=env, capture_output=True, text=True, timeout=540, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert r["carts"] == CARTS and r["scans_sent"] > 0 and r["cart_sessions"] >= CARTS
    assert r["families"] == FAMILIES  # every family online in the cloud's device list
    assert set(r["families_simulated"]) == {"audio", "beacon", "cart", "esl", "pos",
                                            "vending"}
    # the samples: one at the start and one per interval
    assert r["rss_samples"] >= DURATION_S // SAMPLE_S
    assert 0 < r["rss_samples_fitted"] <= r["rss_samples"]
    assert 30 < r["rss_mb_start"] <= r["rss_mb_max"] < 2048
    assert r["rss_mb_end"] <= r["rss_mb_max"]
    assert 0 < r["cpu_pct_mean"] <= r["cpu_pct_p95"] <= 100 * r["cpus"]
    assert r["events_enqueued"] > 0
    assert r["events_per_s"] == pytest.approx(r["events_enqueued"] / DURATION_S, rel=0.2)
    # the outage: every event in the outbox, then in the cloud exactly once
    assert r["outbox_events"] == OUTAGE_EVENTS
    assert r["outbox_depth_at_outage"] >= OUTAGE_EVENTS
    assert r["outage_stored"] == r["outage_rows_in_cloud"] == OUTAGE_EVENTS
    assert r["outage_missing"] == 0
    assert 0 < r["replay_s"] <= r["broker_back_to_empty_s"]
    assert r["reconnect_s"] <= r["broker_back_to_empty_s"]
    assert r["replay_per_s"] == pytest.approx(OUTAGE_EVENTS / r["replay_s"], rel=0.05)
    assert r["bare_publish_per_s"] == pytest.approx(OUTAGE_EVENTS / r["bare_publish_s"],
                                                    rel=0.05)
    assert r["replay_ratio"] == pytest.approx(
        r["replay_per_s"] / r["bare_publish_per_s"], rel=0.01)
    assert list(tmp_path.glob("sf-bench-edge-*")) == []  # the run's data removed
