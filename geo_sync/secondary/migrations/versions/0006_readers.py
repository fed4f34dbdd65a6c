"""Reader tokens of the mirror server: who may clone and download at this secondary.

Revision ID: t0006
Revises: t0005
Create Date: 2026-12-03

A new table, and an index of each registry's paths (the mirror server finds an item's
row by the path in the URL); read only by new code, so old code keeps running while
this is applied.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0006"
down_revision = "t0005"
branch_labels = None
depends_on = None


def _registries() -> list[str]:
    names = sa.inspect(op.get_bind()).get_table_names()
    return sorted(n for n in names if n.startswith("geo_") and n.endswith("_registry"))


def upgrade() -> None:
    for name in _registries():
        op.create_index(f"ix_{name}_path", name, ["path"])
    op.create_table(
        "geo_readers",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("geo_readers")
    for name in _registries():
        op.drop_index(f"ix_{name}_path", table_name=name)
