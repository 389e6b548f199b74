"""Revision 0008 (decision 0026): events keyed by (store, id), and the ledger keys that
older revisions derived from a bare event id rewritten to carry the store, so that a
redelivery of an event stored before the upgrade still finds its work done."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from cloud.db import make_engine, upgrade
from cloud.db.engine import writer
from cloud.db.migrate import alembic_config

_SEED = [
    "INSERT INTO events (id, store_id, kind, seq, ts, historical, data, received_ms) "
    "VALUES ('e1', 'S001', 'sale', 1, 1, false, '{}', 1), "
    "('e2', 'S002', 'refund', 1, 1, false, '{}', 1)",
    "INSERT INTO points_ops (op_id, member_id, kind, points, created_ms) VALUES "
    "('earn:e1', 'm', 'earn', 5, 1), ('spend:api-op', 'm', 'spend', -1, 1)",
    "INSERT INTO points_ledger (id, op_id, member_id, kind, points, created_ms) "
    "VALUES ('l1', 'earn:e1', 'm', 'earn', 5, 1)",
    "INSERT INTO commissions (id, sale_id, beneficiary_id, level, points, status, "
    "created_ms, settle_after_ms, refunded_paid, reversed_points) "
    "VALUES ('c1', 'e1', 'b', 1, 3, 'pending', 1, 2, 0, 0)",
    "INSERT INTO commission_reversals (commission_id, refund_id, refunded_paid, points, "
    "created_ms) VALUES ('c1', 'e2', 1, 1, 1)",
]


def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_0008_scopes_old_keys_by_store_and_back(db_url: str) -> None:
    upgrade(db_url, revision="0007")
    engine = make_engine(db_url)
    try:
        with writer(engine).begin() as conn:
            for sql in _SEED:
                conn.execute(text(sql))
    finally:
        engine.dispose()

    upgrade(db_url)

    assert _rows(db_url, "SELECT op_id FROM points_ops ORDER BY op_id") == [
        ("earn:S001/e1",), ("spend:api-op",)]  # an op naming no stored event is kept
    assert _rows(db_url, "SELECT op_id FROM points_ledger") == [("earn:S001/e1",)]
    assert _rows(db_url, "SELECT sale_id FROM commissions") == [("S001/e1",)]
    assert _rows(db_url, "SELECT refund_id FROM commission_reversals") == [("S002/e2",)]
    # Another store may now store an event with an id already taken.
    engine = make_engine(db_url)
    try:
        with writer(engine).begin() as conn:
            conn.execute(text(
                "INSERT INTO events (id, store_id, kind, seq, ts, historical, data, "
                "received_ms) VALUES ('e1', 'S002', 'sale', 2, 1, false, '{}', 1)"))
            conn.execute(text("DELETE FROM events WHERE store_id = 'S002' AND id = 'e1'"))
        with writer(engine).begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0007")
    finally:
        engine.dispose()
    assert _rows(db_url, "SELECT op_id FROM points_ops ORDER BY op_id") == [
        ("earn:e1",), ("spend:api-op",)]
    assert _rows(db_url, "SELECT sale_id FROM commissions") == [("e1",)]
    assert _rows(db_url, "SELECT refund_id FROM commission_reversals") == [("e2",)]
