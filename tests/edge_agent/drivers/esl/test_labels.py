"""LabelBook: deltas, acknowledgements, retries with backoff, staleness."""

from __future__ import annotations

from edge_agent.drivers.esl.labels import AckResult, LabelBook
from protocols.esl import LabelAck, LabelJob, PriceBook, PriceBookItem


def book(version: int, **prices: int) -> PriceBook:
    return PriceBook(version=version, items={k: PriceBookItem(price_minor=v)
                                             for k, v in prices.items()})


def ack(job: LabelJob, ts: int = 0) -> LabelAck:
    return LabelAck(label_id=job.label_id, job_id=job.job_id, content_hash=job.content_hash,
                    battery_pct=80.0, rssi_dbm=-60, ts=ts)


def test_only_the_delta_is_sent_and_old_versions_are_ignored() -> None:
    lb = LabelBook()
    lb.bind({"L1": "A", "L2": "B", "L3": "C"}, now_ms=0)
    jobs = lb.set_price_book(book(1, A=100, B=200, C=300), now_ms=0)
    assert jobs is not None and sorted(j.label_id for j in jobs) == ["L1", "L2", "L3"]
    for j in jobs:
        assert lb.on_ack(ack(j)) is AckResult.CONVERGED
    delta = lb.set_price_book(book(2, A=100, B=250, C=300), now_ms=1000)
    assert delta is not None
    assert [(j.label_id, j.content.price_minor) for j in delta] == [("L2", 250)]
    assert lb.set_price_book(book(2, A=1, B=1, C=1), now_ms=2000) is None  # same version
    assert lb.set_price_book(book(1, A=1, B=1, C=1), now_ms=2000) is None  # older


def test_withdrawn_item_clears_the_label() -> None:
    lb = LabelBook()
    lb.bind({"L1": "A"}, now_ms=0)
    lb.set_price_book(book(1, A=100), now_ms=0)
    jobs = lb.set_price_book(book(2), now_ms=0)
    assert jobs is not None and jobs[0].content.price_minor is None


def test_outdated_ack_keeps_the_label_pending_and_retries_back_off() -> None:
    lb = LabelBook(retry_s=10, retry_max_s=40, stale_after_s=100)
    lb.bind({"L1": "A"}, now_ms=0)
    (first,) = lb.set_price_book(book(1, A=100), now_ms=0) or []
    (second,) = lb.set_price_book(book(2, A=120), now_ms=1_000) or []
    assert lb.on_ack(ack(first)) is AckResult.OUTDATED
    assert lb.counts(now_ms=1_000).pending == 1
    retry_times = []
    t = 1_000
    while t < 200_000:
        t += 1_000
        if lb.due(now_ms=t):
            retry_times.append(t)
    gaps = [b - a for a, b in zip([1_000, *retry_times], retry_times, strict=False)]
    assert gaps[:4] == [10_000, 20_000, 40_000, 40_000]  # doubling, capped at retry_max_s
    # pending since the first job (t=0), not since the newest: stale after 100 s
    assert lb.stale(now_ms=100_001) == ["L1"]
    assert lb.counts(now_ms=100_001).stale == 1
    assert lb.on_ack(ack(second)) is AckResult.CONVERGED
    assert lb.on_ack(ack(second)) is AckResult.DUPLICATE
    assert lb.stale(now_ms=300_000) == []
    assert lb.due(now_ms=400_000) == []


def test_unknown_labels_are_not_stored_and_the_book_is_bounded() -> None:
    lb = LabelBook(max_labels=2)
    lb.bind({"L1": "A", "L2": "B"}, now_ms=0)
    stranger = LabelAck(label_id="X", content_hash="0" * 16, battery_pct=1.0, rssi_dbm=-1, ts=0)
    assert lb.on_ack(stranger) is AckResult.UNKNOWN
    assert set(lb.labels) == {"L1", "L2"}
    try:
        lb.bind({"L3": "C"}, now_ms=0)
    except ValueError:
        pass
    else:
        raise AssertionError("a third label must be refused")
    assert set(lb.labels) == {"L1", "L2"}


def test_unchanged_item_in_a_new_version_needs_no_job() -> None:
    lb = LabelBook()
    lb.bind({"L1": "A"}, now_ms=0)
    (j1,) = lb.set_price_book(book(1, A=100), now_ms=0) or []
    lb.on_ack(ack(j1))
    (j2,) = lb.set_price_book(book(2, A=90), now_ms=0) or []
    lb.on_ack(ack(j2))
    assert lb.set_price_book(book(3, A=90, B=5), now_ms=0) == []  # A unchanged: no job
    assert lb.counts(now_ms=0).acked == 1


def test_reverting_while_a_job_is_queued_supersedes_that_job() -> None:
    lb = LabelBook()
    lb.bind({"L1": "A"}, now_ms=0)
    (j1,) = lb.set_price_book(book(1, A=100), now_ms=0) or []
    lb.on_ack(ack(j1))
    assert len(lb.set_price_book(book(2, A=90), now_ms=0) or []) == 1  # queued at the AP
    (j3,) = lb.set_price_book(book(3, A=100), now_ms=0) or []  # must overwrite the 90 job
    assert j3.content.price_minor == 100
    assert lb.on_ack(ack(j3)) is AckResult.CONVERGED


def test_a_late_ack_of_an_old_content_makes_the_label_pending_again() -> None:
    lb = LabelBook(retry_s=10)
    lb.bind({"L1": "A"}, now_ms=0)
    (j1,) = lb.set_price_book(book(1, A=100), now_ms=0) or []
    (j2,) = lb.set_price_book(book(2, A=90), now_ms=0) or []
    assert lb.on_ack(ack(j2, ts=5_000)) is AckResult.CONVERGED
    assert lb.on_ack(ack(j1, ts=6_000)) is AckResult.OUTDATED  # the AP delivered j1 late
    (again,) = lb.due(now_ms=6_000)
    assert again.content_hash == j2.content_hash
