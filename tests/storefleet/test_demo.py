"""`storefleet demo` end to end, as a user runs it: one process, everything embedded, run
until the user stops it with Ctrl-C (SIGINT) or a service manager stops it (SIGTERM)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The demo prefers the README's ports (8000, 1883, 1884, 9108, 8090) and the production
# steps need them free: never at the same time (scripts/test.sh runs two workers).
pytestmark = pytest.mark.xdist_group("fixed-ports")

SIX_FAMILIES = ["audio", "beacons", "carts", "esl", "pos", "vending"]
_PROGRESS = re.compile(r"sales (\d+) \((\d+) till, (\d+) cart\)\s+vends (\d+)\s+coupons (\d+) "
                       r"triggered, (\d+) redeemed\s+labels (\d+) updated(?:\s+order (\w+))?"
                       r"(?:\s+cabinet (\w+))?")


Starter = Callable[..., tuple[subprocess.Popen[str], Path, Path]]


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Starter]:
    """Starts ``storefleet demo`` as a user does; whatever the test's outcome, no demo
    outlives it."""
    procs: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> tuple[subprocess.Popen[str], Path, Path]:
        out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        with out.open("w") as stdout, err.open("w") as stderr:  # the child has its copies
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "storefleet", "demo", "--data-dir",
                 str(tmp_path / "demo"), *extra],
                stdout=stdout, stderr=stderr, text=True,
                env={**os.environ, "COLUMNS": "250"}))
        return procs[-1], out, err

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_progress(proc: subprocess.Popen[str], log: Path, *, timeout_s: float,
                   until: Callable[[re.Match[str]], bool]) -> re.Match[str]:
    """The newest progress line in ``log`` (stderr with ``--json``, else stdout) once
    ``until(match)`` holds; fails the test on time-out or if the demo ends first."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        matches = list(_PROGRESS.finditer(log.read_text()))
        if matches:
            last = matches[-1]
            if until(last):
                return last
        time.sleep(0.5)
    raise AssertionError(f"the demo did not get there in {timeout_s:.0f} s; last progress: "
                         f"{last[0] if last else None}")


def _stop(proc: subprocess.Popen[str], sig: signal.Signals) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=150)


def test_ctrl_c_ends_the_demo_with_the_full_summary(tmp_path: Path,
                                                    start_demo: Starter) -> None:
    """The README's first command, stopped with Ctrl-C once the store has done a bit of
    everything: the whole JSON summary, exit 0, and every check in it holds."""
    proc, out, err = start_demo("--json")

    def busy(m: re.Match[str]) -> bool:  # till and cart sales, a vend, the order done,
        # the cabinet pickup collected and the member's vend there
        return (int(m[2]) >= 3 and int(m[3]) >= 1 and int(m[4]) >= 1 and int(m[5]) >= 1
                and m[8] == "handed_over" and m[9] == "done")

    _wait_progress(proc, err, timeout_s=180, until=busy)
    rc = _stop(proc, signal.SIGINT)
    stderr = err.read_text()
    assert rc == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "SIGINT: stopping" in stderr
    summary = json.loads(out.read_text().strip().splitlines()[-1])

    # the pipeline: every event a device saw acknowledged is in the cloud, none twice
    assert summary["stores_online"] == 1
    assert summary["events_produced"] > 100
    assert summary["events_lost"] == 0
    assert summary["events_stored_twice"] == 0
    assert summary["events_stored"] == summary["events_produced"]
    assert summary["device_families_online"] == SIX_FAMILIES
    assert summary["device_families_with_telemetry"] == SIX_FAMILIES
    assert summary["families_simulated"] == ["audio", "beacon", "cart", "esl", "pos",
                                             "vending"]
    assert summary["devices_online"] >= 10
    assert set(summary["content_applied"].values()) == {"ok"}
    assert summary["cart_sessions"] >= 1
    # a store with nothing published yet is a normal state, not a failure
    assert "refresh failed" not in stderr
    # in-aisle: cart screens printed, carts located by the shipped demo-store model (no
    # training at start), coupons triggered, basket-camera snapshots classified
    assert "cart screens   http://127.0.0.1:" in stderr
    assert "/cart/S001-smartcart-01" in stderr
    assert "PositionerLocator (demo_store.onnx)" in stderr
    assert summary["positioning"] == "PositionerLocator"
    assert summary["coupons_triggered"] >= 1
    # shelf coupons (counted by the metric) are some of the coupons the engine triggered
    assert summary["shelf_coupons"] <= summary["coupons_triggered"]
    assert summary["snapshots_classified"] >= 1
    # business events come from the devices that make them: the cabinet's serial session
    # for vends, the till and the carts for sales
    assert summary["vends"] >= 1
    assert summary["vends"] == summary["vends_from_cabinet"]
    assert summary["sales_in_cloud_by_channel"].get("cart", 0) >= 1
    # retail: HQ published the price book and promotions, the till (synced from the cloud,
    # signature checked) sold, and the cloud stored and re-priced every till sale to the
    # same total; the member's points are what the receipts said; the online order was
    # printed at the store's printer and its statuses came back
    assert summary["till_sales"] >= 3 and summary["sales_refused"] == 0
    assert summary["sales_in_cloud"] == summary["till_sales"]
    assert summary["sales_audited"] == summary["sales_in_cloud_total"]
    assert summary["sales_unaudited"] == 0
    assert summary["reprice_mismatches"] == 0
    assert summary["charged_differs"] == 0
    assert summary["coupon_flags_not_allocated"] == 0
    assert summary["member_points"] == summary["member_points_expected"] > 500
    # lane 1 over HTTP: the member's signed code, points authorised by the cloud (and
    # taken once: the balance above), the same code shown again refused as replayed
    assert summary["lane_sales"] >= 1
    assert summary["lane_points_used"] == 100 * summary["lane_sales"]
    assert summary["lane_code_replays_refused"] == summary["lane_sales"]
    assert "cashier screen http://127.0.0.1:" in stderr
    # an online order collected at the cabinet: its pickup code opened exactly the door
    # the cloud reserved, once; the member's code at the cabinet made a vend theirs,
    # marked down near its best-before, its points in the balance above
    assert summary["cabinet_pickup_doors_opened"] == [summary["cabinet_pickup_door"]]
    assert summary["cabinet_pickup_second_try_opened"] == []
    assert summary["cabinet_pickup_status"] == ["picked_up", "handed_over"]
    assert summary["cabinet_member_vends_in_cloud"] == summary["cabinet_member_vends"] == 1
    assert summary["cabinet_member_vend_discount"] > 0
    assert summary["cabinet_member_vend_points"] > 0
    assert summary["online_order_store"] == "S001"
    assert summary["online_order_history"] == ["accepted", "picking", "ready", "handed_over"]
    # paid at lane 1 by a sale naming it (decision 0069), which handed it over
    assert summary["online_order_paid_at_lane"] is not None
    assert summary["pick_ticket_printed"] is True
    assert summary["retail_errors"] == []
    # the e-shelf labels follow the till's book and markdowns: every label's price is what
    # the till charges for one unit (the sample's bakery markdown included)
    assert summary["shelf_prices_checked"] >= 20 and summary["shelf_prices_differ"] == []
    assert "re-priced by the cloud to the same total, none unaudited" in stderr
    printed = sorted((tmp_path / "demo" / "printer").glob("receipt-*.txt"))
    assert len(printed) >= summary["till_sales"] + 1  # receipts and the pick ticket


def _fleet(*argv: str, api: str, token: str) -> str:
    """``fleet ...`` through its console script, as the README's quick start types it."""
    done = subprocess.run([str(Path(sys.executable).parent / "fleet"), *argv],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "STOREFLEET_API": api, "STOREFLEET_TOKEN": token,
                               "COLUMNS": "200"})
    assert done.returncode == 0, f"fleet {' '.join(argv)}: {done.stdout}{done.stderr}"
    return done.stdout


def test_sigterm_ends_the_demo_with_the_plain_summary(start_demo: Starter) -> None:
    """A service manager's SIGTERM, after the README's field-tech rollout on the demo:
    the plain summary on stdout and exit 0 (1 only when a check fails)."""
    proc, out, err = start_demo()
    _wait_progress(proc, out, timeout_s=120, until=lambda m: int(m[2]) >= 1)

    # "Field tech quick start": the firmware image the demo prints, uploaded, rolled out
    # to the vending cabinet and watched until it completes; the board runs it.
    head = out.read_text()
    printed = re.search(r"API \+ docs\s+(\S+)/docs\s+\(token: (\S+)\)", head)
    firmware = re.search(r"a rollout\s+(\S+\.bin)", head)
    assert printed and firmware, head
    (api, token), image = printed.groups(), firmware[1]
    manifest = json.loads(_fleet("artifact", "upload", image, "--kind", "firmware", "--target",
                                 "firmware:vending/sim-lockboard", "--version", "2.0.0",
                                 "--json", api=api, token=token))
    _fleet("rollout", "create", manifest["payload"]["sha256"], "--store", "S001",
           "--device", "S001-vend-01", api=api, token=token)
    rollout = json.loads(_fleet("rollout", "ls", "--json", api=api, token=token))[0]
    deadline = time.monotonic() + 90
    while (status := json.loads(_fleet("rollout", "status", rollout["id"], "--json",
                                       api=api, token=token)))["state"] == "running":
        assert time.monotonic() < deadline, status
        time.sleep(1)
    assert status["state"] == "completed", json.dumps(status)  # whole: why it halted
    # the box reports the board's new version with its next health report
    deadline = time.monotonic() + 30
    while (device := json.loads(_fleet("device", "show", "S001-vend-01", "--json", api=api,
                                       token=token)))["driver"]["firmware_version"] != "2.0.0":
        assert time.monotonic() < deadline, device["driver"]
        time.sleep(1)

    rc = _stop(proc, signal.SIGTERM)
    stdout = out.read_text()
    assert rc == 0, stdout[-3000:] + err.read_text()[-3000:]
    assert "Traceback" not in stdout + err.read_text()
    assert "SIGTERM: stopping" in stdout
    lines = stdout[stdout.index("summary"):]
    assert re.search(r"events_lost\s+0\n", lines)
    assert re.search(r"till_sales\s+[1-9]", lines)
    assert "nothing lost, nothing stored twice" in lines
