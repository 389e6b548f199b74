"""fleet-wide commands (fan-outs) and idempotency keys on commands (decision 0061)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "command_fanouts",
        sa.Column("fanout_id", sa.String(64), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=False),
        sa.Column("stores", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("sender", sa.String(128), nullable=True),
        sa.Column("sender_role", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("fanout_id", name="pk_command_fanouts"),
        sa.UniqueConstraint("sender", "idempotency_key",
                            name="uq_command_fanouts_idempotency"),
    )
    # Nullable: single commands have no fan-out, and rows before this release no key.
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("fanout_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("idempotency_key", sa.String(128), nullable=True))
        batch.create_unique_constraint("uq_commands_idempotency",
                                       ["sender", "idempotency_key"])
    op.create_index("ix_commands_fanout", "commands", ["fanout_id", "status", "cmd_id"])


def downgrade() -> None:
    op.drop_index("ix_commands_fanout", table_name="commands")
    with op.batch_alter_table("commands") as batch:
        batch.drop_constraint("uq_commands_idempotency", type_="unique")
        batch.drop_column("idempotency_key")
        batch.drop_column("fanout_id")
    op.drop_table("command_fanouts")
