"""The "seen but not scanned" check: pictures of products going into a cart against the
units scanned in that cart's session, judged only once the window is over."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from edge_agent.inference.vision.unscanned import UnscannedCheck

W = 10_000


def scans(table: dict[tuple[str, str], dict[str, int]]):  # type: ignore[no-untyped-def]
    def scanned(cart_id: str, session_id: str) -> Mapping[str, int] | None:
        return table.get((cart_id, session_id))

    return scanned


def test_a_scan_before_or_after_the_picture_within_the_window_is_fine() -> None:
    check = UnscannedCheck(window_ms=W)
    basket = {("C1", "s1"): {"bottle": 1}}  # scanned before the picture
    assert check.seen("C1", "bottle", session_id="s1", ts_ms=1_000, snapshot_id="p1")
    assert check.due(1_000 + W - 1, scans(basket)) == []  # not judged before the window ends
    assert check.pending == 1
    assert check.due(1_000 + W, scans(basket)) == [] and check.pending == 0

    check.seen("C1", "fruit", session_id="s1", ts_ms=2_000, snapshot_id="p2")
    basket[("C1", "s1")]["fruit"] = 1  # scanned a few seconds after the picture
    assert check.due(2_000 + W, scans(basket)) == []


def test_the_kth_picture_needs_k_scanned_units() -> None:
    check = UnscannedCheck(window_ms=W)
    basket = {("C1", "s1"): {"snack_bag": 1, "bottle": 0}}
    for i, ts in enumerate((1_000, 2_000)):
        check.seen("C1", "snack_bag", session_id="s1", ts_ms=ts, snapshot_id=f"p{i}")
    check.seen("C1", "bottle", session_id="s1", ts_ms=3_000, snapshot_id="p9")
    found = check.due(3_000 + W, scans(basket))
    assert [(a.category, a.pictured, a.scanned, a.snapshot_id) for a in found] == [
        ("snack_bag", 2, 1, "p1"), ("bottle", 1, 0, "p9")]


def test_redelivered_pictures_count_once_and_ended_sessions_are_not_judged() -> None:
    check = UnscannedCheck(window_ms=W)
    assert check.seen("C1", "bread", session_id="s1", ts_ms=0, snapshot_id="p1")
    assert not check.seen("C1", "bread", session_id="s1", ts_ms=0, snapshot_id="p1")
    check.seen("C2", "bread", session_id="s2", ts_ms=0, snapshot_id="q1")
    found = check.due(W, scans({("C1", "s1"): {}}))  # C2's session is over
    assert [(a.cart_id, a.pictured) for a in found] == [("C1", 1)]
    assert check.unjudged == 1


def test_bounded() -> None:
    check = UnscannedCheck(window_ms=W, max_pending=2)
    assert [check.seen("C1", "fruit", session_id="s", ts_ms=t) for t in range(3)] == [
        True, True, False]
    assert check.dropped == 1
    with pytest.raises(ValueError):
        UnscannedCheck(window_ms=0)
