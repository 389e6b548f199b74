"""``storefleet bench rollout`` runs end to end and reports what the README's performance
table quotes (a small run through the console script, not a measurement; decision 0045)."""

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
MB = 1024 * 1024


def test_bench_rollout_completes_and_reports_the_clouds_cost(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where the boxes' caches go
    run = subprocess.run([str(STOREFLEET), "bench", "rollout", "--json", "--boxes", "3",
                          "--size-mb", "1", "--wave-size", "2"],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["boxes"] == 3 and result["completed"] == 3
    assert result["state"] == "completed" and result["waves"] == 2  # canary, then 2
    assert result["seconds"] > 0
    # every box fetched the whole artifact once, as the cloud's own counter saw it
    assert result["cloud_bytes_served"] == 3 * MB
    assert 30 < result["cloud_peak_rss_mb"] < 2048
    assert list(tmp_path.glob("sf-bench-rollout-*")) == []  # the boxes' caches removed
