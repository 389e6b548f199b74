"""``insert_events`` (decision 0058): SQLite's multi-row INSERTs through the driver and
PostgreSQL's arrays with the data as one JSON array store every value as it came, and
return only the keys they inserted."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cloud.db import make_engine, upgrade
from cloud.db.engine import make_session_factory, writer
from cloud.db.models import Event
from cloud.db.writes import insert_events

# What a text array or a hand-built statement would get wrong: quotes, backslashes,
# braces and commas, non-ASCII, integers past 64 bits, nesting, an empty object.
DATAS: list[dict[str, Any]] = [
    {"q": 'a"b\\c', "u": "é€😀", "n": [1, 2.5, None, True], "o": {"x": {"y": "}{,"}},
     "big": 12345678901234567890},
    {},
    {"s": " lead and trail ", "nl": "a\nb\tc"},
]


def _row(i: int, data: dict[str, Any], *, store: str = "S001") -> dict[str, Any]:
    return {"store_id": store, "id": f"e{i}", "kind": "sale", "device_id": None,
            "seq": i, "ts": 1_000 + i, "historical": i % 2 == 1, "data": data,
            "received_ms": 2_000}


def test_events_round_trip_and_duplicates_are_not_returned(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        sessions = make_session_factory(writer(engine))
        # 250 rows: more than one SQLite statement of 100 rows, and a short last one.
        rows = [_row(i, DATAS[i % len(DATAS)]) for i in range(250)]
        with sessions.begin() as session:
            assert insert_events(session, rows) == {("S001", f"e{i}") for i in range(250)}
        again = [*rows[:5], _row(0, {}, store="S002")]  # same id, another store: new
        with sessions.begin() as session:
            assert insert_events(session, again) == {("S002", "e0")}
        with sessions() as session:
            stored = {(e.store_id, e.id): e for e in session.scalars(select(Event))}
        assert len(stored) == 251
        for row in rows:
            event = stored[row["store_id"], row["id"]]
            assert event.data == row["data"]
            assert (event.kind, event.seq, event.ts, event.historical, event.received_ms,
                    event.device_id) == (row["kind"], row["seq"], row["ts"],
                                         row["historical"], row["received_ms"], None)
    finally:
        engine.dispose()
