"""BatchProcessor + apply on real SQLite and PostgreSQL: idempotency and ordering rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select

from cloud.db import make_engine, make_session_factory, upgrade
from cloud.db.engine import writer
from cloud.db.models import Device, Event, Shadow, Store, TelemetryLatest
from cloud.ingest.batch import BatchProcessor
from protocols import encode, topics
from protocols.clock import ManualClock
from protocols.messages import Birth, Death, DeviceInfo, Sample, ShadowReported, Telemetry
from protocols.messages import Event as EventMsg


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def processor(engine: Engine) -> BatchProcessor:
    return BatchProcessor(make_session_factory(writer(engine)), clock=ManualClock(),
                          max_payload=64 * 1024)


def evt(event_id: str, seq: int = 1, store: str = "s1") -> tuple[str, bytes]:
    msg = EventMsg(id=event_id, kind="sale", store_id=store, seq=seq, ts=1000,
                   data={"total": 1299, "currency": "EUR"})
    return topics.evt(store, "sale"), encode(msg)


def state(msg: Birth | Death, store: str = "s1") -> tuple[str, bytes]:
    return topics.state(store), encode(msg)


def birth(bd_seq: int, ts: int = 1, devices: list[DeviceInfo] | None = None) -> Birth:
    return Birth(bd_seq=bd_seq, ts=ts, agent_version="1.2.3", devices=devices or [])


def count(engine: Engine, model: type) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def store_row(engine: Engine, store_id: str = "s1") -> Store:
    with make_session_factory(engine)() as session:
        store = session.get(Store, store_id)
        assert store is not None
        return store


def test_same_event_twice_is_stored_once(engine: Engine, processor: BatchProcessor) -> None:
    first = processor.process([evt("e-1")])
    assert (first.outcome.events_stored, first.outcome.duplicates) == (1, 0)
    again = processor.process([evt("e-1")])
    assert (again.outcome.events_stored, again.outcome.duplicates) == (0, 1)
    assert count(engine, Event) == 1


def test_duplicate_inside_one_batch_and_across_batches(
    engine: Engine, processor: BatchProcessor
) -> None:
    result = processor.process([evt("a"), evt("b"), evt("a"), evt("c")])
    assert (result.outcome.events_stored, result.outcome.duplicates) == (3, 1)
    result = processor.process([evt("c"), evt("d")])
    assert (result.outcome.events_stored, result.outcome.duplicates) == (1, 1)
    assert count(engine, Event) == 4


def test_duplicate_changes_nothing(engine: Engine, processor: BatchProcessor) -> None:
    processor.process([evt("e-1", seq=7)])
    topic, _ = evt("e-1")
    changed = EventMsg(id="e-1", kind="sale", store_id="s1", seq=99, ts=5, data={"total": 1})
    processor.process([(topic, encode(changed))])
    with make_session_factory(engine)() as session:
        row = session.get(Event, ("s1", "e-1"))
        assert row is not None
        assert (row.seq, row.ts, row.data["total"]) == (7, 1000, 1299)


def test_birth_then_stale_death_keeps_store_online(
    engine: Engine, processor: BatchProcessor
) -> None:
    processor.process([state(birth(1))])
    processor.process([state(Death(bd_seq=1))])
    assert not store_row(engine).online
    processor.process([state(birth(2, ts=2))])
    # The older session's death arrives late (e.g. redelivered): the store stays online.
    result = processor.process([state(Death(bd_seq=1))])
    assert result.outcome.stale == 1
    store = store_row(engine)
    assert store.online and store.bd_seq == 2


def test_redelivered_birth_of_dead_session_does_not_revive(
    engine: Engine, processor: BatchProcessor
) -> None:
    processor.process([state(birth(3)), state(Death(bd_seq=3))])
    result = processor.process([state(birth(3))])
    assert result.outcome.stale == 1
    assert not store_row(engine).online


def test_older_birth_is_ignored_and_death_of_newer_session_counts(
    engine: Engine, processor: BatchProcessor
) -> None:
    processor.process([state(birth(5, ts=50))])
    assert processor.process([state(birth(4, ts=40))]).outcome.stale == 1
    store = store_row(engine)
    assert store.online and store.bd_seq == 5 and store.last_birth_ms == 50
    processor.process([state(Death(bd_seq=6))])  # a session whose birth we never saw
    assert not store_row(engine).online


def test_birth_rebuilds_devices(engine: Engine, processor: BatchProcessor) -> None:
    devs = [DeviceInfo(device_id="cart-1", kind="cart"), DeviceInfo(device_id="esl-ap",
                                                                     kind="esl", fw="2.0")]
    processor.process([state(birth(1, devices=devs))])
    processor.process([state(birth(2, ts=2, devices=devs[1:]))])
    with make_session_factory(engine)() as session:
        cart = session.get(Device, ("s1", "cart-1"))
        esl = session.get(Device, ("s1", "esl-ap"))
        assert cart is not None and not cart.online  # not in the newer birth
        assert esl is not None and esl.online and esl.fw == "2.0"
    processor.process([state(Death(bd_seq=2))])
    with make_session_factory(engine)() as session:
        assert session.scalar(select(func.count()).where(Device.online)) == 0


def test_telemetry_keeps_newest_value(engine: Engine, processor: BatchProcessor) -> None:
    def tele(ts: int, battery: int) -> tuple[str, bytes]:
        msg = Telemetry(device_id="cart-7", device_kind="cart",
                        samples=[Sample(ts=ts, values={"battery": battery})])
        return topics.tele("s1", "cart", "cart-7"), encode(msg)

    processor.process([tele(2000, 80)])
    processor.process([tele(1000, 99)])  # late, older sample
    with make_session_factory(engine)() as session:
        latest = session.get(TelemetryLatest, ("s1", "cart-7", "battery"))
        assert latest is not None and (latest.value, latest.ts) == (80, 2000)
        device = session.get(Device, ("s1", "cart-7"))
        assert device is not None and device.online and device.last_seen_ms == 2000


def test_reported_shadow_only_moves_forward(engine: Engine, processor: BatchProcessor) -> None:
    topic = topics.shadow_reported("s1", "agent")
    processor.process([(topic, encode(ShadowReported(version=3, ts=1, state={"x": 3})))])
    result = processor.process([(topic, encode(ShadowReported(version=2, ts=2, state={"x": 2})))])
    assert result.outcome.stale == 1
    with make_session_factory(engine)() as session:
        shadow = session.get(Shadow, ("s1", "agent"))
        assert shadow is not None and shadow.reported == {"x": 3}
        assert shadow.reported_version == 3
