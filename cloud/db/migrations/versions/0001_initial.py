"""initial schema: stores, devices, events, telemetry, shadows, commands

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "stores",
        sa.Column("store_id", ID, nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("bd_seq", sa.BigInteger(), nullable=True),
        sa.Column("dead_bd_seq", sa.BigInteger(), nullable=True),
        sa.Column("agent_version", sa.String(64), nullable=True),
        sa.Column("last_birth_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_death_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=True),
        sa.Column("birth", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("store_id", name="pk_stores"),
    )
    op.create_table(
        "devices",
        sa.Column("store_id", ID, nullable=False),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("kind", ID, nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("fw", sa.String(128), nullable=True),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=True),
        sa.Column("health", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("store_id", "device_id", name="pk_devices"),
    )
    op.create_table(
        "events",
        sa.Column("id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("kind", ID, nullable=False),
        sa.Column("device_id", ID, nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("historical", sa.Boolean(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_store_seq", "events", ["store_id", "seq"])
    op.create_index("ix_events_received", "events", ["received_ms", "id"])
    op.create_table(
        "telemetry_latest",
        sa.Column("store_id", ID, nullable=False),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "device_id", "metric", name="pk_telemetry_latest"),
    )
    op.create_table(
        "shadows",
        sa.Column("store_id", ID, nullable=False),
        sa.Column("target", ID, nullable=False),
        sa.Column("desired", sa.JSON(), nullable=True),
        sa.Column("desired_version", sa.BigInteger(), nullable=False),
        sa.Column("reported", sa.JSON(), nullable=True),
        sa.Column("reported_version", sa.BigInteger(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "target", name="pk_shadows"),
    )
    op.create_table(
        "commands",
        sa.Column("cmd_id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("target", ID, nullable=False),
        sa.Column("name", ID, nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("completed_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("cmd_id", name="pk_commands"),
    )
    op.create_index("ix_commands_store", "commands", ["store_id", "created_ms"])


def downgrade() -> None:
    op.drop_index("ix_commands_store", table_name="commands")
    op.drop_table("commands")
    op.drop_table("shadows")
    op.drop_table("telemetry_latest")
    op.drop_index("ix_events_received", table_name="events")
    op.drop_index("ix_events_store_seq", table_name="events")
    op.drop_table("events")
    op.drop_table("devices")
    op.drop_table("stores")
