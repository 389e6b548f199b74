"""HQ's fleet gauges (cloud.fleet_metrics, decision 0054) computed from a real database."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.engine import make_engine, make_session_factory, writer
from cloud.db.migrate import upgrade
from cloud.db.models import Device, Shadow, Store, TelemetryLatest
from cloud.db.models_loyalty import StoreRegion
from cloud.db.models_rollouts import Rollout, RolloutTarget
from cloud.fleet_metrics import FleetCollector, compute
from protocols.clock import ManualClock
from tests.cloud.conftest import metric


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        yield make_session_factory(writer(engine))
    finally:
        engine.dispose()


def _rollout(rollout_id: str, state: str) -> Rollout:
    return Rollout(id=rollout_id, sha256="0" * 64, target="agent", version="2", device="agent",
                   stores=[], selection=None, canary_size=1, wave_size=1, success_pct=100,
                   failure_threshold=1, deadline_s=60, state=state, wave=0, created_ms=0,
                   updated_ms=0, reason=None)


def _seed_small(session: Session) -> None:
    session.add_all([
        Store(store_id="s1", online=True), Store(store_id="s2", online=False),
        Store(store_id="s3", online=True), Store(store_id="s4", online=True),
        StoreRegion(store_id="s1", region="north"), StoreRegion(store_id="s2", region="north"),
        StoreRegion(store_id="s4", region="south"),
        Device(store_id="s1", device_id="esl-1", kind="esl", online=True),
        Device(store_id="s1", device_id="p-1", kind="printer", online=True),
        Device(store_id="s2", device_id="esl-2", kind="esl", online=False),
        Device(store_id="s3", device_id="b-1", kind="beacon", online=True),
        Device(store_id="s3", device_id="x-1", kind="Weird Family!", online=True),
        # the box itself is not a device HQ counts (a row from before decision 0054)
        Device(store_id="s4", device_id="agent", kind="agent", online=True),
    ])

    def tele(store: str, device: str, name: str, value: Any) -> TelemetryLatest:
        return TelemetryLatest(store_id=store, device_id=device, metric=name, value=value, ts=1)

    session.add_all([
        tele("s1", "p-1", "alarms", 2), tele("s1", "esl-1", "alarms", 0),
        tele("s3", "b-1", "alarms", 2),
        tele("s1", "agent", "outbox_depth", 10), tele("s1", "agent", "outbox_oldest_age_s", 5.5),
        tele("s4", "agent", "outbox_depth", 3), tele("s4", "agent", "outbox_oldest_age_s", 120),
        # an offline store's last report is not its outbox now
        tele("s2", "agent", "outbox_depth", 99), tele("s2", "agent", "outbox_oldest_age_s", 999),
    ])

    def shadow(store: str, health: dict[str, Any]) -> Shadow:
        return Shadow(store_id=store, target="agent", desired_version=0, updated_ms=0,
                      reported={"devices_health": health}, reported_version=1)

    session.add_all([
        shadow("s1", {"p-1": {"family": "printer", "alarms": ["paper_low", "cover_open"]},
                      "esl-1": {"family": "esl", "alarms": []}}),
        shadow("s3", {"b-1": {"family": "beacon", "alarms": ["beacon_silent", "Bad Kind!"]}}),
        _rollout("r1", "running"), _rollout("r2", "completed"),
        RolloutTarget(rollout_id="r1", store_id="s1", wave=0, state="succeeded", updated_ms=0),
        RolloutTarget(rollout_id="r1", store_id="s3", wave=1, state="waiting", updated_ms=0),
        RolloutTarget(rollout_id="r2", store_id="s1", wave=0, state="succeeded", updated_ms=0),
    ])


def test_fleet_gauges_count_by_region_family_and_kind(
        sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _seed_small(session)
    registry = CollectorRegistry()
    registry.register(FleetCollector(sessions=sessions, clock=ManualClock(), registry=registry))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"storefleet_fleet_{name}", labels)

    assert value("stores", region="north", state="online") == 1
    assert value("stores", region="north", state="offline") == 1
    assert value("stores", region="none", state="online") == 1
    assert value("stores", region="south", state="offline") == 0  # present, zero
    assert value("devices", family="esl", region="north", state="online") == 1
    assert value("devices", family="esl", region="north", state="offline") == 1
    assert value("devices", family="printer", region="north", state="offline") == 0
    assert value("devices", family="beacon", region="none", state="online") == 1
    assert value("devices", family="other", region="none", state="online") == 1
    assert value("devices", family="agent", region="south", state="online") is None
    assert value("device_alarms", family="printer", kind="paper_low") == 1
    assert value("device_alarms", family="printer", kind="cover_open") == 1
    assert value("device_alarms", family="beacon", kind="beacon_silent") == 1
    assert value("device_alarms", family="beacon", kind="other") == 1
    assert value("outbox_events", region="north") == 10  # s2 is offline: not counted
    assert value("outbox_oldest_age_seconds", region="north") == 5.5
    assert value("outbox_events", region="south") == 3
    assert value("outbox_oldest_age_seconds", region="south") == 120
    assert value("outbox_stores_behind", region="south") == 1
    assert value("outbox_stores_behind", region="north") == 0
    assert value("outbox_stores_reporting", region="none") == 0
    assert value("rollouts", state="running") == 1
    assert value("rollouts", state="completed") == 1
    assert value("rollout_targets", state="succeeded") == 1  # of the running rollout only
    assert value("rollout_targets", state="waiting") == 1
    # Bounded labels: no store or device id anywhere in the exposition.
    text = generate_latest(registry).decode()
    for store_or_device in ("s1", "s2", "s3", "s4", "p-1", "esl-1", "b-1"):
        assert f'"{store_or_device}"' not in text


def test_figures_are_cached_for_cache_s(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.add(Store(store_id="s1", online=True))
    clock, registry = ManualClock(), CollectorRegistry()
    collector = FleetCollector(sessions=sessions, clock=clock, registry=registry, cache_s=10)
    registry.register(collector)
    online = {"region": "none", "state": "online"}
    assert metric(registry, "storefleet_fleet_stores", **online) == 1
    with sessions.begin() as session:
        session.add(Store(store_id="s2", online=True))
    clock.advance(9)
    assert metric(registry, "storefleet_fleet_stores", **online) == 1  # the cached figure
    clock.advance(2)
    assert metric(registry, "storefleet_fleet_stores", **online) == 2


def test_a_failing_database_is_counted_and_the_scrape_still_answers(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables: every query fails
    try:
        clock, registry = ManualClock(), CollectorRegistry()
        registry.register(FleetCollector(sessions=make_session_factory(engine), clock=clock,
                                         registry=registry))
        text = generate_latest(registry).decode()
        assert "storefleet_fleet_stores" not in text.replace("# ", "")
        assert metric(registry, "storefleet_fleet_collect_errors_total") == 1
        clock.advance(11)
        generate_latest(registry)
        assert metric(registry, "storefleet_fleet_collect_errors_total") == 2
    finally:
        engine.dispose()


FAMILIES = ("esl", "printer", "beacon", "vending", "audio", "screen", "cart", "sensor",
            "camera", "till")


def _seed_chain(db_url: str, *, stores: int, devices_per_store: int) -> None:
    """A chain as ingest would have left it, written with bulk inserts."""
    upgrade(db_url)
    engine = make_engine(db_url)
    rng = random.Random(54)
    store_rows, region_rows, device_rows, tele_rows, shadow_rows = [], [], [], [], []
    for i in range(stores):
        sid = f"s{i:05d}"
        store_rows.append({"store_id": sid, "online": rng.random() > 0.02})
        region_rows.append({"store_id": sid, "region": f"r{i % 40:02d}"})
        health = {}
        for d in range(devices_per_store):
            family = FAMILIES[d % len(FAMILIES)]
            did = f"{family}-{d}"
            alarms = ["paper_low"] if family == "printer" and rng.random() < 0.05 else []
            device_rows.append({"store_id": sid, "device_id": did, "kind": family,
                                "online": rng.random() > 0.01, "health": {"alarms": len(alarms)}})
            for name, value in (("alarms", len(alarms)), ("battery", 80), ("rssi", -60)):
                tele_rows.append({"store_id": sid, "device_id": did, "metric": name,
                                  "value": value, "ts": 1})
            health[did] = {"family": family, "model": "m1", "online": True, "state": "running",
                           "alarms": alarms, "restarts": 0, "last_error": None}
        for name, reading in (("outbox_depth", rng.randint(0, 50)),
                              ("outbox_oldest_age_s", rng.random() * 90)):
            tele_rows.append({"store_id": sid, "device_id": "agent", "metric": name,
                              "value": reading, "ts": 1})
        shadow_rows.append({"store_id": sid, "target": "agent", "desired_version": 0,
                            "updated_ms": 0, "reported_version": 1,
                            "reported": {"devices_health": health, "tasks": {}, "alarms": {}}})
    try:
        with engine.begin() as conn:
            for model, rows in ((Store, store_rows), (StoreRegion, region_rows),
                                (Device, device_rows), (TelemetryLatest, tele_rows),
                                (Shadow, shadow_rows)):
                for start in range(0, len(rows), 2000):
                    conn.execute(insert(model), rows[start:start + 2000])
    finally:
        engine.dispose()


def test_a_5000_store_chain_is_a_few_queries_per_scrape(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'chain.db'}"
    _seed_chain(db_url, stores=5000, devices_per_store=10)
    engine = make_engine(db_url)
    try:
        sessions = make_session_factory(engine)
        with sessions() as session:
            compute(session)  # warm the page cache, as a running cloud would have it
            took = []
            for _ in range(3):
                started = time.perf_counter()
                figures = compute(session)
                took.append(time.perf_counter() - started)
    finally:
        engine.dispose()
    assert sum(figures.stores.values()) == 5000
    assert sum(figures.devices.values()) == 50_000
    assert len({region for region, _ in figures.stores}) == 40
    assert 0 < figures.alarms["printer", "paper_low"] < 5000
    print(json.dumps({"fleet_scrape_s": round(min(took), 3), "stores": 5000,
                      "devices": 50_000}))
    # ~0.3 s here (decision 0054); 5 s only catches a per-store query on a loaded machine.
    assert min(took) < 5, took
