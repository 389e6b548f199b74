"""event ids are per store: events keyed by (store_id, id); every table and ledger key
derived from an event id carries the store too (decision 0026)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEY = sa.String(128)
EVENT_KEY = sa.String(255)  # cloud.db.models_loyalty.EventKey
# Tables whose primary key was the event id (and reason): now (store_id, event id ...).
_EVENT_PKS = {
    "sale_audits": ["event_id"],
    "sale_price_mismatches": ["event_id", "reason"],
    "coupon_flags": ["event_id"],
    "order_status_events": ["event_id"],
}
# Ledger keys "<prefix><event id>" written before this revision, rewritten to
# "<prefix><store>/<event id>": a redelivery of an old event must find its old work done.
_LEDGER_KEYS = [
    ("points_ops", "op_id", ("earn:", "spend:", "reverse:", "return:")),
    ("points_ledger", "op_id", ("earn:", "spend:", "reverse:", "return:")),
    ("coupons", "source_key", ("sale:",)),
]


def _set_pk(table: str, columns: list[str]) -> None:
    # SQLite cannot change a primary key in place: batch mode copies the table.
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(f"pk_{table}", type_="primary")
        batch.create_primary_key(f"pk_{table}", columns)


def _scope(table: str, column: str, prefix: str) -> None:
    # Before this revision event ids were unique across stores, so each old key names
    # exactly one stored event, and through it one store.
    n = len(prefix) + 1  # SQL substr counts from 1
    op.execute(
        f"UPDATE {table} SET {column} = '{prefix}' || (SELECT e.store_id FROM events e "
        f"WHERE e.id = substr({table}.{column}, {n})) || '/' || substr({column}, {n}) "
        f"WHERE {column} LIKE '{prefix}%' AND {column} NOT LIKE '%/%' AND EXISTS "
        f"(SELECT 1 FROM events e WHERE e.id = substr({table}.{column}, {n}))")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_received")
        batch.drop_constraint("pk_events", type_="primary")
        batch.create_primary_key("pk_events", ["store_id", "id"])
        batch.create_index("ix_events_received", ["received_ms", "store_id", "id"])
    for table, columns in _EVENT_PKS.items():
        _set_pk(table, ["store_id", *columns])
    with op.batch_alter_table("offline_redemptions") as batch:
        batch.drop_constraint("uq_offline_redemptions_event_id", type_="unique")
        batch.create_unique_constraint("uq_offline_redemptions_store_event",
                                       ["store_id", "event_id"])
    for table, column in [("points_ops", "op_id"), ("points_ledger", "op_id"),
                          ("coupons", "source_key"), ("commission_reversals", "refund_id")]:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=EVENT_KEY, existing_type=KEY,
                               existing_nullable=False)
    with op.batch_alter_table("commissions") as batch:
        batch.alter_column("sale_id", type_=EVENT_KEY, existing_type=sa.String(64),
                           existing_nullable=False)
    for table, column, prefixes in _LEDGER_KEYS:
        for prefix in prefixes:
            _scope(table, column, prefix)
    # Commissions name their sale, and their reversals the refund, by the bare event id.
    op.execute("UPDATE commissions SET sale_id = (SELECT e.store_id FROM events e "
               "WHERE e.id = commissions.sale_id) || '/' || sale_id WHERE sale_id NOT LIKE "
               "'%/%' AND EXISTS (SELECT 1 FROM events e WHERE e.id = commissions.sale_id)")
    op.execute("UPDATE commission_reversals SET refund_id = (SELECT e.store_id FROM events e "
               "WHERE e.id = commission_reversals.refund_id) || '/' || refund_id WHERE "
               "refund_id NOT LIKE '%/%' AND EXISTS (SELECT 1 FROM events e "
               "WHERE e.id = commission_reversals.refund_id)")


def _after_slash(column: str) -> str:
    """SQL for the part of ``column`` after its first '/' (the bare event id)."""
    if op.get_bind().dialect.name == "postgresql":
        return f"substr({column}, strpos({column}, '/') + 1)"
    return f"substr({column}, instr({column}, '/') + 1)"


def downgrade() -> None:
    # Only possible while no two stores share an event id (the old primary key).
    for table, column, prefixes in _LEDGER_KEYS:
        for prefix in prefixes:
            op.execute(f"UPDATE {table} SET {column} = '{prefix}' || {_after_slash(column)} "
                       f"WHERE {column} LIKE '{prefix}%/%'")
    op.execute(f"UPDATE commissions SET sale_id = {_after_slash('sale_id')} "
               "WHERE sale_id LIKE '%/%'")
    op.execute(f"UPDATE commission_reversals SET refund_id = {_after_slash('refund_id')} "
               "WHERE refund_id LIKE '%/%'")
    with op.batch_alter_table("commissions") as batch:
        batch.alter_column("sale_id", type_=sa.String(64), existing_type=EVENT_KEY,
                           existing_nullable=False)
    for table, column in [("points_ops", "op_id"), ("points_ledger", "op_id"),
                          ("coupons", "source_key"), ("commission_reversals", "refund_id")]:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=KEY, existing_type=EVENT_KEY,
                               existing_nullable=False)
    with op.batch_alter_table("offline_redemptions") as batch:
        batch.drop_constraint("uq_offline_redemptions_store_event", type_="unique")
        batch.create_unique_constraint("uq_offline_redemptions_event_id", ["event_id"])
    for table, columns in _EVENT_PKS.items():
        _set_pk(table, columns)
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_received")
        batch.drop_constraint("pk_events", type_="primary")
        batch.create_primary_key("pk_events", ["id"])
        batch.create_index("ix_events_received", ["received_ms", "id"])
