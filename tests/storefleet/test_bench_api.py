"""``storefleet bench api`` runs end to end on a real PostgreSQL and a real ``storefleet
cloud serve`` and its JSON adds up: every seeded store and device listed once, the
member read answers the member asked for with its seeded points, the snapshot holds the
store's promotions, no endpoint had an error, rates and ratios follow from the counts
(a small run through the console script, not a measurement; decision 0060)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench._services import find_pg_bin
from tests.services import unavailable

pytestmark = pytest.mark.postgres

STOREFLEET = Path(sys.executable).parent / "storefleet"
STORES, DEVICES, MEMBERS, PROMOTIONS, CLIENTS, SECONDS = 20, 200, 100, 30, 4, 2.0
# one promotion in ten is scoped to a region (R0, R1, R2 for 30): store S00000 is in R0
# and gets the 27 chain-wide ones and R0's
S00000_PROMOTIONS = 28
ENDPOINTS = ["healthz", "stores", "stores_cursor", "store_devices", "devices",
             "devices_cursor", "member", "snapshot"]


def test_bench_api_on_postgres_lists_every_row_and_answers_without_errors() -> None:
    if find_pg_bin() is None:
        unavailable("PostgreSQL is not installed (apt-get install postgresql)")
    run = subprocess.run(
        [str(STOREFLEET), "bench", "api", "--json", "--stores", str(STORES),
         "--devices", str(DEVICES), "--members", str(MEMBERS), "--promotions",
         str(PROMOTIONS), "--clients", str(CLIENTS), "--seconds", str(SECONDS),
         "--limit", "10"],  # pages of 10, so the cursor pages exist at this size
        capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])

    assert result["db"] == "postgres" and result["clients"] == CLIENTS
    assert (result["stores"], result["devices"], result["members"]) == (STORES, DEVICES,
                                                                        MEMBERS)
    assert result["promotions"] == PROMOTIONS  # every one published (no tiers, campaigns)
    assert result["checked"] == {
        "stores_listed": STORES, "devices_listed": DEVICES, "member": "ok",
        "snapshot_store": "S00000", "snapshot_promotions": S00000_PROMOTIONS, "ok": True}
    assert list(result["endpoints"]) == ENDPOINTS
    base = result["endpoints"]["healthz"]
    assert result["baseline_rps"] == base["rps"] > 0
    for name, phase in result["endpoints"].items():
        assert phase["errors"] == 0 and phase["error_kinds"] == {}, name
        assert phase["requests"] > 0, name
        assert phase["rps"] == pytest.approx(phase["requests"] / SECONDS, abs=0.05), name
        assert 0 < phase["p50_ms"] <= phase["p99_ms"], name
        assert phase["ratio"] == pytest.approx(phase["rps"] / base["rps"], abs=0.001), name
        assert phase["server_cpu_ms"] > 0, name  # the cloud's process did the work
    assert result["ok"] is True
