"""The ESL driver against the in-package FakeContext: jobs out, acks in, alarms, faults."""

from __future__ import annotations

import json

import pytest

from edge_agent.drivers.base import DRIVERS, CommandRejected, DeviceConfig, DriverError
from edge_agent.drivers.esl import STALE_ALARM, EslDriver
from edge_agent.drivers.testing import FakeContext
from protocols import decode, encode
from protocols.clock import ManualClock
from protocols.esl import ApStatus, LabelAck, LabelJob


def make(ctx: FakeContext, **options: object) -> EslDriver:
    opts = {"labels": {"L1": "A", "L2": "B", "L3": "C"}, "retry_s": 60, "stale_after_s": 300,
            **options}
    return EslDriver(DeviceConfig(device_id="AP1", family="esl", options=opts), ctx)


def jobs(ctx: FakeContext) -> list[LabelJob]:
    return [decode(p, LabelJob) for t, p, _, _ in ctx.published if t == "store/esl_ap/AP1/down/job"]


def ack_of(job: LabelJob, ts: int) -> bytes:
    return encode(LabelAck(label_id=job.label_id, job_id=job.job_id, content_hash=job.content_hash,
                           battery_pct=12.0, rssi_dbm=-70, ts=ts))


def metric(ctx: FakeContext, name: str, **labels: str) -> float:
    return ctx.registry.get_sample_value(name, {"device_id": "AP1", **labels}) or 0.0


@pytest.fixture
def ctx() -> FakeContext:
    return FakeContext(clock=ManualClock())


async def test_registered_and_validates_options(ctx: FakeContext) -> None:
    assert DRIVERS["esl"] is EslDriver
    with pytest.raises(DriverError):
        make(ctx, retry_s=-1)
    with pytest.raises(DriverError):
        make(ctx, labels=["L1"])


async def test_price_book_to_acked_labels_with_delta(ctx: FakeContext) -> None:
    drv = make(ctx)
    ctx.on_local("esl_ap", drv._on_local)
    result = await drv.handle_command("esl_price_book", {"version": 1, "items": {
        "A": {"price_minor": 199, "promo_text": "-10%"}, "B": {"price_minor": 250},
        "C": {"price_minor": 300, "barcode": "4006381333931"}}})
    assert result == {"applied": True, "version": 1, "jobs": 3}
    await drv.tick()
    sent = jobs(ctx)
    assert sorted((j.label_id, j.content.price_minor) for j in sent) == [
        ("L1", 199), ("L2", 250), ("L3", 300)]
    for job in sent:
        await ctx.deliver_local("esl_ap", "AP1", "ack", ack_of(job, ctx.clock.now_ms()))
    assert drv.health().details["labels_acked"] == 3
    assert drv.health().details["labels_low_battery"] == 3
    assert metric(ctx, "storefleet_esl_acks_total", result="converged") == 3
    # a new version changing one item sends one job
    ctx.published.clear()
    drv.set_price_book(2, {"A": {"price_minor": 199, "promo_text": "-10%"},
                           "B": {"price_minor": 260}, "C": {"price_minor": 300,
                                                            "barcode": "4006381333931"}})
    await drv.tick()
    assert [(j.label_id, j.content.price_minor, j.version) for j in jobs(ctx)] == [("L2", 260, 2)]
    await drv.tick()
    assert metric(ctx, "storefleet_esl_labels", state="pending") == 1
    assert metric(ctx, "storefleet_esl_labels", state="acked") == 2


async def test_retries_then_stale_alarm_then_clear(ctx: FakeContext) -> None:
    clock = ctx.clock
    assert isinstance(clock, ManualClock)
    drv = make(ctx)
    ctx.on_local("esl_ap", drv._on_local)
    drv.set_price_book(1, {"A": {"price_minor": 1}, "B": {"price_minor": 2},
                           "C": {"price_minor": 3}})
    await drv.tick()
    first = {j.label_id: j for j in jobs(ctx)}
    for label in ("L1", "L2"):
        await ctx.deliver_local("esl_ap", "AP1", "ack", ack_of(first[label], clock.now_ms()))
    for _ in range(30):  # L3 never answers: 300 s of 10 s ticks
        clock.advance(10)
        await drv.tick()
    retries = [j for j in jobs(ctx) if j.label_id == "L3"]
    assert len(retries) == 3  # sent at 0, retried at 60 and 180 (backoff doubles to 120)
    assert drv.health().alarms == ()
    clock.advance(10)
    await drv.tick()
    assert drv.health().alarms == (STALE_ALARM,)
    (alarm,) = await ctx.wait_events(1)
    assert alarm.kind == "device_alarm"
    assert alarm.data["alarm"] == STALE_ALARM and alarm.data["active"] is True
    assert alarm.data["labels"] == ["L3"]
    await drv.tick()
    assert len(ctx.events) == 1  # one event per edge, not per tick
    await ctx.deliver_local("esl_ap", "AP1", "ack", ack_of(retries[-1], clock.now_ms()))
    await drv.tick()
    assert drv.health().alarms == ()
    assert ctx.events[-1].data["active"] is False


async def test_ap_restart_resends_unacked_jobs(ctx: FakeContext) -> None:
    drv = make(ctx)
    ctx.on_local("esl_ap", drv._on_local)
    drv.set_price_book(1, {"A": {"price_minor": 1}, "B": {"price_minor": 2},
                           "C": {"price_minor": 3}})
    await drv.tick()
    first = jobs(ctx)
    await ctx.deliver_local("esl_ap", "AP1", "ack", ack_of(first[0], 0))
    status = ApStatus(boot_id="boot-1", labels=3, pending=2, ts=0)
    await ctx.deliver_local("esl_ap", "AP1", "status", encode(status))
    assert drv.health().online
    await drv.tick()
    assert len(jobs(ctx)) == 3  # nothing new while the AP keeps its queue
    restarted = status.model_copy(update={"boot_id": "boot-2", "pending": 0})
    await ctx.deliver_local("esl_ap", "AP1", "status", encode(restarted))
    await drv.tick()
    assert sorted(j.label_id for j in jobs(ctx)[3:]) == sorted(j.label_id for j in first[1:])


async def test_garbage_flood_and_strangers_are_counted_and_contained(ctx: FakeContext) -> None:
    drv = make(ctx, max_msgs_per_s=10)
    ctx.on_local("esl_ap", drv._on_local)
    for payload in (b"garbage", b"{}", b"[1,2]", b'{"label_id":"X"}', b"x" * 20_000):
        await ctx.deliver_local("esl_ap", "AP1", "ack", payload)
    await ctx.deliver_local("esl_ap", "AP1", "bogus", b"{}")
    await ctx.deliver_local("esl_ap", "AP9", "ack", b"garbage")  # another AP: not ours
    stranger = LabelAck(label_id="nobody", content_hash="0" * 16, battery_pct=1, rssi_dbm=-1, ts=0)
    await ctx.deliver_local("esl_ap", "AP1", "ack", encode(stranger))
    assert metric(ctx, "storefleet_esl_bad_messages_total", reason="not_json") == 1
    assert metric(ctx, "storefleet_esl_bad_messages_total", reason="too_large") == 1
    assert metric(ctx, "storefleet_esl_bad_messages_total", reason="unknown_type") == 1
    assert metric(ctx, "storefleet_esl_bad_messages_total", reason="unknown_label") == 1
    assert "nobody" not in drv.book.labels
    for _ in range(200):  # burst is 4 s worth (40): the rest are dropped, not processed
        await ctx.deliver_local("esl_ap", "AP1", "ack", encode(stranger))
    assert metric(ctx, "storefleet_esl_bad_messages_total", reason="flood") >= 160
    assert len(drv.book.labels) == 3


async def test_commands_reject_bad_arguments(ctx: FakeContext) -> None:
    drv = make(ctx)
    with pytest.raises(CommandRejected):
        await drv.handle_command("esl_price_book", {"version": "1", "items": {}})
    with pytest.raises(CommandRejected, match="price_minor"):
        await drv.handle_command("esl_price_book",
                                 {"version": 1, "items": {"A": {"price_minor": -5}}})
    with pytest.raises(CommandRejected):
        await drv.handle_command("bind_labels", {"labels": {"L9": 5}})
    with pytest.raises(CommandRejected):
        await drv.handle_command("launch", {})
    assert await drv.handle_command("bind_labels", {"labels": {"L9": "A"}}) == {"jobs": 0}
    drv.set_price_book(1, {"A": {"price_minor": 5}})
    status = await drv.handle_command("esl_status", {})
    assert status["pending"] == 4  # B and C withdrawn: their labels are cleared too
    assert json.dumps(status)
    assert await drv.handle_command("unbind_labels", {"labels": ["L9"]}) == {"removed": 1}
