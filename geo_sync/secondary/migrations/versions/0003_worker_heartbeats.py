"""Worker heartbeats: each worker process (and `secondary run`) records that it is alive.

Revision ID: t0003
Revises: t0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0003"
down_revision = "t0002"
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A new table only: code that does not know it keeps running while it is created.
    op.create_table(
        "geo_workers",
        sa.Column("worker_id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("hostname", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", Stamp, nullable=False),
        sa.Column("beat_at", Stamp, nullable=False),
        sa.Column("items_done", sa.BigInteger(), nullable=False),
        sa.Column("last_item_at", Stamp, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("geo_workers")
