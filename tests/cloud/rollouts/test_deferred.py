"""A ``deferred`` report (the box's device is busy, decision 0043) is recorded on the
target and is not a failure; the deadline from the offer still applies to it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry

from cloud.db.engine import make_engine, make_session_factory, writer
from cloud.db.migrate import upgrade
from cloud.db.models import Store
from cloud.db.models_artifacts import Artifact
from cloud.db.models_rollouts import Rollout, RolloutFailure, RolloutTarget
from cloud.publish import MemoryPublisher
from cloud.rollouts.service import (
    RolloutHook,
    RolloutMetrics,
    RolloutOfferer,
    RolloutPlan,
    create,
)
from protocols.clock import ManualClock
from protocols.messages import Event

SHA = "cd" * 32


def test_a_deferred_target_waits_without_failing_until_its_deadline(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    upgrade(engine)
    sessions = make_session_factory(writer(engine))
    clock = ManualClock()
    metrics = RolloutMetrics(CollectorRegistry())
    offerer = RolloutOfferer(sessions=sessions, reader=make_session_factory(engine),
                             publisher=MemoryPublisher(), clock=clock, metrics=metrics)
    hook = RolloutHook(metrics)
    with sessions.begin() as session:
        for store in ("s1", "s2"):
            session.add(Store(store_id=store))
        session.add(Artifact(sha256=SHA, kind="firmware", target="firmware:vending/cab-8",
                             version="2.0.0", size=1, created_ms=0, signed={}))
        rollout_id = create(session, RolloutPlan(
            sha256=SHA, device="vend-1", stores=["s1", "s2"], canary_size=2,
            failure_threshold=1, deadline_s=60), now_ms=clock.now_ms()).id
    assert asyncio.run(offerer.tick()) == 2

    def report(store: str, step: str, detail: str = "") -> None:
        event = Event(id=f"{store}-{step}", kind="rollout_status", store_id=store,
                      device_id="vend-1", seq=1, ts=clock.now_ms(), data={
                          "rollout_id": rollout_id, "sha256": SHA, "device": "vend-1",
                          "step": step, "detail": detail})
        with sessions.begin() as session:
            hook(session, event, clock.now_ms())

    def target(store: str) -> tuple[str, str | None]:
        with sessions() as session:
            t = session.get(RolloutTarget, (rollout_id, store))
            assert t is not None
            return t.state, t.detail

    busy = "a vend session is in progress (session)"
    report("s1", "deferred", busy)
    report("s2", "deferred", busy)
    assert target("s1") == ("deferred", busy)
    assert metrics.reports.labels(step="deferred")._value.get() == 2
    clock.advance(30)
    report("s1", "installing")  # the vend ended: the install goes on
    report("s1", "succeeded", "version 2.0.0")
    assert asyncio.run(offerer.tick()) == 0
    assert target("s2") == ("deferred", busy)  # busy is not a failure
    clock.advance(31)  # past s2's deadline, counted from its offer
    asyncio.run(offerer.tick())
    assert target("s1") == ("succeeded", "version 2.0.0")
    assert target("s2") == ("failed", f"deadline passed (deferred: {busy})")
    with sessions() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None and rollout.state == "halted"
        assert session.get(RolloutFailure, ("s2", "vend-1", SHA)) is not None
    engine.dispose()
