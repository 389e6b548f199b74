"""``storefleet bench content`` runs end to end and reports consistent figures (a small
run through the console script, not a measurement; the README's row is a 100-store
run)."""

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
STORES = 3
RECORDING_S = 3.0  # 48 KB at 8 kHz 16-bit: three chunks to each unit


def test_bench_content_every_store_plays_and_the_figures_agree(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where the stores' data goes
    run = subprocess.run([str(STOREFLEET), "bench", "content", "--json", "--stores",
                          str(STORES), "--recording-s", str(RECORDING_S), "--timeout-s", "60"],
                         env=env, capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert r["stores"] == STORES and r["manifests"] == STORES
    assert r["playing"] == STORES  # every unit plays the new recording, held decoded
    assert r["converged"] == STORES  # and the cloud's content status says so
    assert r["recording_bytes"] == 44 + int(RECORDING_S * 8000) * 2  # WAV header + PCM
    playing, applied = r["playing_s"], r["applied_s"]
    assert 0 < r["publish_s"]
    assert 0 < playing["p50"] <= playing["p95"] <= playing["max"] == r["all_playing_s"]
    # each store switched to the manifest before its unit could play the recording
    assert 0 < applied["p50"] <= playing["p50"] and applied["max"] <= playing["max"]
    assert 0 < r["converged_s"]["p50"] <= r["converged_s"]["max"]
    first = r["first_schedule_playing_s"]  # the schedule the new one replaces
    assert 0 < first["p50"] <= first["p95"] <= first["max"]
    assert len(r["baseline_rounds_s"]) == 3 and min(r["baseline_rounds_s"]) > 0
    assert r["baseline_s"] == sorted(r["baseline_rounds_s"])[1]  # their median
    # the ratio is of the unrounded times: the rounded ones give it within rounding
    assert r["all_playing_vs_baseline"] == pytest.approx(
        r["all_playing_s"] / r["baseline_s"], rel=0.1, abs=0.1)
    # each store fetched the recording from the cloud once, and sent it to its unit (a
    # chunk whose ack is late is sent again: on a loaded box, a little more than once)
    assert r["asset_bytes_served"] == STORES * r["recording_bytes"]
    assert STORES * r["recording_bytes"] <= r["unit_bytes_sent"] < 2 * STORES * r[
        "recording_bytes"]
    assert 30 < r["cloud_peak_rss_mb"] < 2048 and 30 < r["stores_peak_rss_mb"] < 4096
    assert 0 < r["local_buses_pss_mb"]
    assert list(tmp_path.glob("sf-bench-content-*")) == []  # the stores' data removed
