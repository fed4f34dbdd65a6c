"""The highest primary epoch this secondary has followed, and a promoted marker.

One row (id 1). The Geo API sends its epoch on every response; the secondary records
the highest it has seen and refuses a site answering with a lower one (an old
primary after a promotion: split brain). ``promoted_at`` is set when this site was
promoted: its `secondary run` then refuses to start, since the mirror is now a
primary's storage.

Revision ID: t0007
Revises: t0006
Create Date: 2026-12-03

Re-chained by the lead after another branch's t0006 at merge.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0007"
down_revision = "t0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "geo_epoch",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("primary_url", sa.Text),
        sa.Column("seen_at", sa.DateTime(timezone=True)),
        sa.Column("promoted_at", sa.DateTime(timezone=True)),
    )
    op.execute(sa.text("INSERT INTO geo_epoch (id, epoch) VALUES (1, 0)"))


def downgrade() -> None:
    op.drop_table("geo_epoch")
