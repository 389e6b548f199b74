"""``storefleet bench ingest`` runs end to end on real Mosquitto and PostgreSQL and its
JSON adds up: every event stored once, ratios computed from the rates it reports (a
small run through the console script, not a measurement; decision 0055)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench._services import find_pg_bin
from tests.services import find_mosquitto, unavailable

pytestmark = pytest.mark.mosquitto

STOREFLEET = Path(sys.executable).parent / "storefleet"
EVENTS = 400


def _bench(*args: str) -> dict[str, Any]:
    run = subprocess.run([str(STOREFLEET), "bench", "ingest", "--json", "--events",
                          str(EVENTS), "--baseline-rounds", "1", "--timeout-s", "60", *args],
                         capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def _check(result: dict[str, Any], *, db: str, workers: list[int]) -> None:
    assert result["db"] == db and result["events"] == EVENTS
    assert result["all_stored_once"] is True
    assert [p["workers"] for p in result["phases"]] == workers
    # seconds are rounded to the millisecond: a 400-event drain takes 20-ish ms here, so
    # the rate recomputed from them is off by up to 0.5 ms worth (a CI run: 2 %)
    bare = result["events"] / result["bare_seconds"]
    assert result["bare_per_s"] == pytest.approx(
        bare, rel=0.01 + 0.0005 / result["bare_seconds"])
    for phase in result["phases"]:
        assert phase["stored"] == EVENTS  # every event once: the key forbids twice
        rate = EVENTS / phase["seconds"]
        rounding = 0.0005 / phase["seconds"] + 0.0005 / result["bare_seconds"]
        assert phase["stored_per_s"] == pytest.approx(rate, rel=0.01 + rounding)
        assert phase["ratio_per_worker"] == pytest.approx(
            rate / phase["workers"] / bare, rel=0.01 + rounding, abs=0.002)
        assert len(phase["worker_cpu_s"]) == phase["workers"]
        assert all(cpu > 0 for cpu in phase["worker_cpu_s"])  # they did the work
    one = result["phases"][0]
    assert result["stored_per_s"] == one["stored_per_s"]
    assert result["ratio"] == pytest.approx(
        one["stored_per_s"] / bare, rel=0.01 + 0.0005 / result["bare_seconds"], abs=0.002)


def test_bench_ingest_on_sqlite_stores_every_event_once_with_one_and_two_workers() -> None:
    if find_mosquitto() is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
    _check(_bench("--workers", "1,2"), db="sqlite", workers=[1, 2])


@pytest.mark.postgres
def test_bench_ingest_on_postgres_stores_every_event_once() -> None:
    if find_mosquitto() is None or find_pg_bin() is None:
        unavailable("mosquitto and PostgreSQL are needed (apt-get install ...)")
    _check(_bench("--db", "postgres", "--workers", "1"), db="postgres", workers=[1])
