"""``storefleet bench fleet`` runs end to end with 20 stores and reports consistent
figures (through the console script; a check, not a measurement: the README's row is
the 5,000-store run)."""

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
STORES = 20


def test_bench_fleet_holds_every_store_and_the_figures_agree(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    run = subprocess.run([str(STOREFLEET), "bench", "fleet", "--json", "--stores", str(STORES),
                          "--rate", "1", "--steady-s", "4", "--timeout-s", "90"],
                         env=env, capture_output=True, text=True, timeout=280, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert r["stores"] == STORES and r["stores_connected"] == STORES
    assert r["processes"] == 1 and 0 < r["connect_s"]
    # what the stores offered was stored (the window's edges: within a third)
    assert r["events_offered_per_s"] > 0
    assert r["events_stored_per_s"] == pytest.approx(r["events_offered_per_s"], rel=0.35)
    assert r["recovery_s"] > r["outage_s"]  # the broker was down that long at least
    # one fleet-wide command: every store's result collected, after the POST returned
    assert r["commands_ok"] == STORES and r["command_results"] == {"ok": STORES}
    assert 0 < r["command_post_s"] < r["command_fanout_s"]
    assert r["sales_audited"] > 0  # sales priced under the published promotion
    assert r["sales_mismatched"] == 0 and r["sales_unaudited"] == 0
    assert set(r["sim_errors"]) <= {"session_lost", "connect", "ready_timeout",
                                    "death_not_sent"}  # only the restart's
    assert 20 < r["cloud_peak_rss_mb"] < 2048 and len(r["sim_peak_rss_mb"]) == 1
    assert list(tmp_path.glob("bench-fleet-*")) == []  # the run's files removed
