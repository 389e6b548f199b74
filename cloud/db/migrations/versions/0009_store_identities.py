"""store identities: enrolment tokens, certificates in use and revoked (decision 0035)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_identities",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=True),
        sa.Column("token_expires_ms", sa.BigInteger(), nullable=True),
        sa.Column("cert_serial", sa.String(64), nullable=True),
        sa.Column("provisioned_ms", sa.BigInteger(), nullable=False),
        sa.Column("enrolled_ms", sa.BigInteger(), nullable=True),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("store_id", name="pk_store_identities"),
        sa.UniqueConstraint("token_sha256", name="uq_store_identities_token_sha256"),
    )
    op.create_table(
        "revoked_certificates",
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("serial", name="pk_revoked_certificates"),
    )


def downgrade() -> None:
    op.drop_table("revoked_certificates")
    op.drop_table("store_identities")
