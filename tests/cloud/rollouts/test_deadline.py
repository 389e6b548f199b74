"""A rollout's per-target deadline and a wave that finishes short of its success share
(decision 0040), on a real migrated SQLite database with the offerer's own tick."""

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
from protocols import topics
from protocols.clock import ManualClock
from protocols.messages import Event

SHA = "ab" * 32


def test_a_silent_store_fails_at_its_deadline_and_the_short_wave_halts(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    upgrade(engine)
    sessions = make_session_factory(writer(engine))
    clock = ManualClock()
    metrics = RolloutMetrics(CollectorRegistry())
    publisher = MemoryPublisher()
    offerer = RolloutOfferer(sessions=sessions, reader=make_session_factory(engine),
                             publisher=publisher, clock=clock, metrics=metrics)
    with sessions.begin() as session:
        for store in ("s1", "s2"):
            session.add(Store(store_id=store))
        session.add(Artifact(sha256=SHA, kind="firmware", target="firmware:vending/cab-8",
                             version="2.0.0", size=1, created_ms=0, signed={}))
        rollout_id = create(session, RolloutPlan(
            sha256=SHA, device="vend-1", stores=["s1", "s2"], canary_size=1,
            failure_threshold=2, deadline_s=60), now_ms=clock.now_ms()).id
    assert asyncio.run(offerer.tick()) == 1
    assert [m.topic for m in publisher.messages] == [topics.cmd("s1", "agent")]
    clock.advance(59)
    assert asyncio.run(offerer.tick()) == 0  # within its deadline: nothing changes
    clock.advance(2)
    assert asyncio.run(offerer.tick()) == 0  # past it: failed; s2 is never offered
    with sessions() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None and rollout.state == "halted"
        assert rollout.reason == "wave 0: 0 of 1 succeeded, 100% needed"
        assert session.get(RolloutTarget, (rollout_id, "s1")).state == "failed"  # type: ignore[union-attr]
        assert session.get(RolloutTarget, (rollout_id, "s2")).state == "waiting"  # type: ignore[union-attr]
        assert session.get(RolloutFailure, ("s1", "vend-1", SHA)) is not None
    # a late success report changes nothing: the target is done
    late = Event(id="e1", kind="rollout_status", store_id="s1", device_id="vend-1", seq=1,
                 ts=clock.now_ms(), data={"rollout_id": rollout_id, "sha256": SHA,
                                          "device": "vend-1", "step": "succeeded"})
    with sessions.begin() as session:
        RolloutHook(metrics)(session, late, clock.now_ms())
    with sessions() as session:
        assert session.get(RolloutTarget, (rollout_id, "s1")).state == "failed"  # type: ignore[union-attr]
    assert metrics.reports.labels(step="ignored")._value.get() == 1
    engine.dispose()
