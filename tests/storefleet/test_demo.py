"""`storefleet demo` end to end, as a user runs it: one process, everything embedded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SIX_FAMILIES = ["audio", "beacons", "carts", "esl", "pos", "vending"]


def test_demo_runs_the_whole_store_and_loses_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "storefleet", "demo", "--duration", "20", "--json",
         "--data-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["stores_online"] == 1
    assert summary["events_produced"] > 100
    assert summary["events_lost"] == 0
    assert summary["events_duplicated"] == 0
    assert summary["events_stored"] == summary["events_produced"]
    assert summary["device_families_online"] == SIX_FAMILIES
    assert summary["device_families_with_telemetry"] == SIX_FAMILIES
    assert summary["devices_online"] >= 10
    assert set(summary["content_applied"].values()) == {"ok"}
    assert summary["cart_sessions"] >= 1
    # in-aisle: cart screens printed, carts located by the shipped demo-store model (no
    # training at start), shelf coupons counted, basket-camera snapshots classified
    assert "cart screens   http://127.0.0.1:" in proc.stderr
    assert "/cart/S001-smartcart-01" in proc.stderr
    assert "PositionerLocator (demo_store.onnx)" in proc.stderr
    assert summary["positioning"] == "PositionerLocator"
    # shelf coupons are some of the coupons triggered (two counts, from the metric and the
    # engine, that must agree); how many depends on where 20 s of shopping takes the carts
    assert 0 <= summary["shelf_coupons"] <= summary["coupons_triggered"]
    assert isinstance(summary["snapshots_classified"], int)
    # retail: HQ published the price book and promotions, the till (synced from the cloud,
    # signature checked) sold, and the cloud stored and re-priced every sale to the same
    # total; the member's points are what the receipts said; the online order was printed
    # at the store's printer and its statuses came back
    assert summary["till_sales"] >= 1 and summary["sales_refused"] == 0
    assert summary["sales_in_cloud"] == summary["till_sales"]
    assert summary["reprice_mismatches"] == 0
    assert summary["member_points"] == summary["member_points_expected"] > 500
    assert summary["online_order_store"] == "S001"
    assert summary["online_order_history"] == ["accepted", "picking", "ready", "handed_over"]
    assert summary["pick_ticket_printed"] is True
    assert summary["retail_errors"] == []
    # the e-shelf labels follow the till's book and markdowns: every label's price is what
    # the till charges for one unit (the sample's bakery markdown included)
    assert summary["shelf_prices_checked"] >= 20 and summary["shelf_prices_differ"] == []
    assert "till sales in the cloud ledger, each re-priced to the same total" in proc.stderr
    printed = sorted((tmp_path / "demo" / "printer").glob("receipt-*.txt"))
    assert len(printed) >= summary["till_sales"] + 1  # receipts and the pick ticket
