"""sale audits: one outcome row per sale; findings keyed by (event, reason) with kind
and source device, so unaudited sales and charged-vs-recorded differences are findings

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.String(64)
MS = sa.BigInteger()
# Reasons that meant "could not be re-priced" before this revision had a kind for them.
_UNAUDITED = "('unknown_snapshot', 'unpriceable', 'bad_payload')"


def upgrade() -> None:
    op.create_table(
        "sale_audits",
        sa.Column("event_id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("device_id", ID, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("paid", sa.BigInteger(), nullable=True),
        sa.Column("charged", sa.BigInteger(), nullable=True),
        sa.Column("detected_ms", MS, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_sale_audits"),
    )
    op.create_index("ix_sale_audits_store", "sale_audits", ["store_id", "outcome"])
    # SQLite cannot change a primary key in place: batch mode copies the table.
    with op.batch_alter_table("sale_price_mismatches") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False,
                                   server_default="mismatch"))
        batch.add_column(sa.Column("device_id", ID, nullable=True))
        batch.drop_constraint("pk_sale_price_mismatches", type_="primary")
        batch.create_primary_key("pk_sale_price_mismatches", ["event_id", "reason"])
    op.execute(f"UPDATE sale_price_mismatches SET kind = 'unaudited' WHERE reason IN {_UNAUDITED}")
    op.execute("UPDATE sale_price_mismatches SET device_id = (SELECT e.device_id FROM events e "
               "WHERE e.id = sale_price_mismatches.event_id)")
    # Findings made before this revision were one per sale: each is that sale's outcome.
    op.execute("INSERT INTO sale_audits (event_id, store_id, device_id, outcome, reason, "
               "detected_ms) SELECT event_id, store_id, device_id, kind, reason, detected_ms "
               "FROM sale_price_mismatches")


def downgrade() -> None:
    op.execute("DELETE FROM sale_price_mismatches WHERE reason = 'charged_differs' OR "
               "reason IN ('no_basket', 'engine_version')")
    with op.batch_alter_table("sale_price_mismatches") as batch:
        batch.drop_constraint("pk_sale_price_mismatches", type_="primary")
        batch.create_primary_key("pk_sale_price_mismatches", ["event_id"])
        batch.drop_column("device_id")
        batch.drop_column("kind")
    op.drop_index("ix_sale_audits_store", table_name="sale_audits")
    op.drop_table("sale_audits")
