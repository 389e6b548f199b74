"""Migration 0022 fills store_sales from the sale events already stored (SQLite and
PostgreSQL), so a store's figures start with its history, not empty."""

from __future__ import annotations

from sqlalchemy import insert, select

from cloud.db import make_engine, upgrade
from cloud.db.models import Event
from cloud.db.models_staff import StoreSale


def test_migration_indexes_the_sales_already_stored(db_url: str) -> None:
    upgrade(db_url, revision="0021")
    engine = make_engine(db_url)
    try:
        rows = [
            {"store_id": "S001", "id": "e1", "kind": "sale", "seq": 1, "ts": 10,
             "data": {"member_id": "m1", "totals": {"paid": 900}}, "received_ms": 11},
            {"store_id": "S001", "id": "e2", "kind": "sale", "seq": 2, "ts": 20,
             "data": {"totals": {"paid": "junk"}}, "received_ms": 21},
            {"store_id": "S002", "id": "e1", "kind": "sale", "seq": 1, "ts": 30,
             "data": {"member_id": "m" * 80, "totals": {"paid": 700}}, "received_ms": 31},
            {"store_id": "S001", "id": "e3", "kind": "refund", "seq": 3, "ts": 40,
             "data": {"sale_id": "e1"}, "received_ms": 41},
        ]
        with engine.begin() as conn:
            conn.execute(insert(Event.__table__), rows)  # type: ignore[arg-type]
        upgrade(db_url)
        with engine.connect() as conn:
            got = conn.execute(select(StoreSale.store_id, StoreSale.event_id,
                                      StoreSale.member_id, StoreSale.paid, StoreSale.ts)
                               .order_by(StoreSale.store_id, StoreSale.event_id)).all()
        assert [tuple(r) for r in got] == [("S001", "e1", "m1", 900, 10),
                                           ("S001", "e2", None, 0, 20),
                                           ("S002", "e1", None, 700, 30)]
    finally:
        engine.dispose()
