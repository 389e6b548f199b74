"""The benchmark runs and reports what the CLI promises (a short run, not a measurement)."""

from __future__ import annotations

import json

from bench import pricing as bench


def test_bench_reports_rate_and_p99(capsys) -> None:
    assert bench.main(["--json", "--seconds", "0.05"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["baskets_per_s"] > 0 and result["p99_ms"] > 0
    assert result["applicable_min"] >= 20
    assert result["distinct_baskets"] == 1_000 and result["lines_per_basket"] == 20
    assert result["promotions"] >= 490
    # the Python engine measured in the same run, on the same baskets, with equal results
    assert result["python_baskets_per_s"] > 0 and result["python_p99_ms"] > 0
    assert result["speedup_vs_python"] > 0 and result["results_equal"] is True
    assert result["engine"] in ("compiled", "python")
    # every basket was priced by both engines and compared (none when only one exists)
    assert result["results_checked"] == (1_000 if result["engine"] == "compiled" else 0)
