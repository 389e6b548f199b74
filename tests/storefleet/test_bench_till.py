"""``storefleet bench till`` runs end to end through the console script and its JSON
adds up: every sale completed is in the outbox, the rates follow from what it counted
(a tiny run, not a measurement; decision 0063)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

STOREFLEET = Path(sys.executable).parent / "storefleet"


@pytest.mark.parametrize(("flow", "requests"), [("sale", 1), ("basket", 6)])
def test_bench_till_tiny_run(flow: str, requests: int) -> None:
    run = subprocess.run([str(STOREFLEET), "bench", "till", "--json", "--lanes", "2",
                          "--sales", "4", "--items", "2", "--warmup", "1", "--flow", flow],
                         capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    r: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    assert r["lanes"] == 2 and r["sales"] == 8 and r["flow"] == flow
    assert r["requests_per_sale"] == requests
    assert r["requests_per_s"] == pytest.approx(r["sales_per_s"] * requests, rel=0.05)
    assert r["failures"] == 0
    assert r["completed"] == 2 * (4 + 1) and r["outbox_sales"] == r["completed"]
    assert r["sales_per_s"] == pytest.approx(r["sales"] / r["wall_s"], rel=0.02)
    assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
    assert r["sale_p95_ms"] >= r["complete_p95_ms"] > 0
    assert r["baseline_sales_per_s"] > 0 and r["till_cpu_ms_per_sale"] > 0
    assert r["ratio_to_baseline"] == pytest.approx(
        r["sales_per_s"] / r["baseline_sales_per_s"], rel=0.01)
    assert "lane till:" in run.stdout
