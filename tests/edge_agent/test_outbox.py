"""The durable outbox and the kv store, on a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edge_agent.metrics import AgentMetrics
from edge_agent.storage import Database, KvStore
from edge_agent.uplink.outbox import NewRow, Outbox
from protocols.clock import ManualClock


def row(event_id: str, size: int = 10, *, kind: str = "sale") -> NewRow:
    return NewRow(
        id=event_id,
        topic=f"sf/v1/s1/evt/{kind}",
        encode=lambda seq: f"{seq:0{size}d}".encode()[-size:],
    )


class Opened:
    def __init__(
        self, path: Path, clock: ManualClock, *, store_id: str | None = None, **bounds: float
    ) -> None:
        self.metrics = AgentMetrics(CollectorRegistry())
        self.db = Database(path)
        self.kv = KvStore(self.db, max_seen_cmds=3)
        self.outbox = Outbox(
            self.db,
            clock=clock,
            metrics=self.metrics,
            max_bytes=int(bounds.get("max_bytes", 1 << 20)),
            max_age_s=bounds.get("max_age_s", 3600),
            headroom_alarm_s=bounds.get("headroom_alarm_s", 3600),
            store_id=store_id,
        )

    async def __aenter__(self) -> Opened:
        await self.db.open()
        await self.outbox.load()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.db.close()

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels or None) or 0.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def box(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Opened]:
    async with Opened(tmp_path / "outbox.db", clock) as opened:
        yield opened


async def test_put_assigns_monotonic_seqs_and_ignores_duplicate_ids(box: Opened) -> None:
    seqs = await box.outbox.put_many([row("a"), row("b"), row("c")])
    assert seqs == [1, 2, 3]
    again = await box.outbox.put_many([row("b"), row("d"), row("a")])
    assert again == [None, 4, None]
    assert box.outbox.depth() == 4
    assert box.sample("storefleet_events_enqueued_total") == 4
    assert box.sample("storefleet_events_duplicate_total") == 2
    rows = await box.outbox.peek(10)
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    assert [r.id for r in rows] == ["a", "b", "c", "d"]
    assert rows[0].payload == b"0000000001"  # the payload was built with its seq


async def test_survives_reopen_and_never_reuses_seqs(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "outbox.db"
    async with Opened(path, clock) as box:
        await box.outbox.put_many([row(f"e{i}") for i in range(5)])
        await box.outbox.delete([1, 2, 3, 4, 5])  # drained: the table is empty
        assert box.outbox.depth() == 0
    async with Opened(path, clock) as box:
        assert box.outbox.last_seq == 5
        assert await box.outbox.put_many([row("f"), row("e1")]) == [6, 7]
        assert box.outbox.depth() == 2
    async with Opened(path, clock) as box:
        assert box.outbox.depth() == 2
        assert box.outbox.bytes() == 20
        assert [r.seq for r in await box.outbox.peek(10)] == [6, 7]
        assert await box.outbox.put_many([row("f")]) == [None]  # still there: no second row


async def test_peek_after_and_attempts_and_delete(box: Opened) -> None:
    await box.outbox.put_many([row(f"e{i}") for i in range(6)])
    first = await box.outbox.peek(2, mark_attempt=True)
    assert [r.seq for r in first] == [1, 2] and first[0].attempts == 0
    later = await box.outbox.peek(10, after_seq=2)
    assert [r.seq for r in later] == [3, 4, 5, 6]
    again = await box.outbox.peek(2)
    assert [r.attempts for r in again] == [1, 1]
    assert await box.outbox.delete([1, 3, 99]) == 2
    assert box.outbox.depth() == 4
    assert box.outbox.bytes() == 40
    assert [r.seq for r in await box.outbox.peek(10)] == [2, 4, 5, 6]


async def test_byte_bound_drops_oldest_and_counts(tmp_path: Path, clock: ManualClock) -> None:
    # Low-value rows: a business event is never dropped (test_outbox_bound.py).
    async with Opened(tmp_path / "o.db", clock, max_bytes=100) as box:
        await box.outbox.put_many([row(f"e{i}", kind="device_event") for i in range(10)])
        assert box.outbox.depth() == 10  # exactly 100 bytes
        await box.outbox.put_many([row("x", size=25)])  # 125 bytes: drop the 3 oldest
        assert [r.seq for r in await box.outbox.peek(100)] == [4, 5, 6, 7, 8, 9, 10, 11]
        assert box.outbox.bytes() == 95
        assert box.sample("storefleet_outbox_dropped_total", reason="max_bytes") == 3


async def test_age_bound_drops_oldest_and_counts(tmp_path: Path, clock: ManualClock) -> None:
    async with Opened(tmp_path / "o.db", clock, max_age_s=60) as box:
        await box.outbox.put_many([row("old1", kind="label_ack"), row("old2", kind="cart_session")])
        clock.advance(30)
        await box.outbox.put_many([row("new")])
        assert box.outbox.oldest_age_ms() == 30_000
        assert box.sample("storefleet_outbox_oldest_age_seconds") == 30
        clock.advance(45)
        dropped = await box.outbox.enforce_bounds()
        assert dropped == {"max_age": 2, "max_bytes": 0}
        assert [r.id for r in await box.outbox.peek(10)] == ["new"]
        assert box.outbox.oldest_age_ms() == 45_000
        assert box.sample("storefleet_outbox_dropped_total", reason="max_age") == 2
        assert box.sample("storefleet_outbox_depth") == 1


async def test_kv_incr_is_durable_and_commands_are_remembered(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "o.db"
    async with Opened(path, clock) as box:
        assert await box.kv.incr("bd_seq") == 1
        assert await box.kv.incr("bd_seq") == 2
        await box.kv.set("shadow.agent", {"version": 3, "state": {"a": 1}})
        assert await box.kv.remember_command("c1", now_ms=1)
        assert not await box.kv.remember_command("c1", now_ms=2)
    async with Opened(path, clock) as box:
        assert await box.kv.incr("bd_seq") == 3
        assert await box.kv.get("shadow.agent") == {"version": 3, "state": {"a": 1}}
        assert not await box.kv.remember_command("c1", now_ms=3)
        for i, cmd in enumerate(["c2", "c3", "c4"]):  # bounded to 3: c1 is forgotten
            assert await box.kv.remember_command(cmd, now_ms=10 + i)
        assert await box.kv.remember_command("c1", now_ms=20)
