"""``python -m bench.triggers`` reports its spread over rounds (a short run, not a
measurement): every round's figures, the median / min / max over rounds, CPU per scan
report and the collector's pauses, with the unindexed baseline in the same run, and the
CPU per report of the agent's path alone."""

from __future__ import annotations

import json
import os

import pytest

from bench import triggers as bench


def test_the_bench_reports_each_round_and_the_spread_over_rounds(
        capsys: pytest.CaptureFixture[str]) -> None:
    cpus = os.sched_getaffinity(0)
    assert bench.main(["--json", "--carts", "12", "--seconds", "1.5", "--warmup", "0.5",
                       "--rules", "30", "--zone-s", "0.8", "--cooldown-s", "1",
                       "--rounds", "2", "--baseline-rounds", "1", "--path-scans", "600"]) == 0
    assert os.sched_getaffinity(0) == cpus  # pinned for the run only
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    indexed, baseline = result["indexed"], result["baseline_unindexed"]
    assert [r["indexed"] for r in indexed["rounds"]] == [True, True]
    assert [r["indexed"] for r in baseline["rounds"]] == [False]
    for r in indexed["rounds"] + baseline["rounds"]:
        # 12 carts at 5 Hz, each in the grocery zone 2 of 7 steps: coupons do arrive
        assert r["coupons"] > 0 and r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["scans_per_s"] == pytest.approx(60, rel=0.2)
        assert r["cpu_us_per_scan"] >= r["loop_cpu_us_per_scan"] > 0
        assert set(r["gc"]) == {"gen0", "gen1", "gen2"}
    for key in ("p50_ms", "p99_ms", "cpu_us_per_scan"):
        values = [r[key] for r in indexed["rounds"]]
        assert indexed[key] == {"median": pytest.approx(sum(values) / 2, abs=1e-3),
                                "min": min(values), "max": max(values)}
    assert result["locator"] == "beacon"
    # the agent's per-scan path alone, no sockets: three repetitions, every report judged
    path = result["scan_path"]
    assert path["scans"] == 600 and len(path["cpu_us_per_scan"]) == 3
    assert path["min_cpu_us_per_scan"] == min(path["cpu_us_per_scan"]) > 0

