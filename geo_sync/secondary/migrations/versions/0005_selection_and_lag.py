"""Selective sync and per-item lag: the applied selection; when each row's change was
committed on the primary, and when its copy was synced and verified.

Revision ID: t0005
Revises: t0004
Create Date: 2026-11-23

Every column is nullable and read only by new code, so old code keeps running while
this is applied. Registry tables are found by name (``geo_<type>_registry``), so a
data type added by a later migration is covered by the code that creates its table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0005"
down_revision = "t0004"
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)
UNVERIFIED = "change_verified_at IS NULL"
VERIFIED = "change_verified_at IS NOT NULL"
LAG_COLUMNS = ("change_committed_at", "change_synced_at", "change_verified_at")


def _registries() -> list[str]:
    names = sa.inspect(op.get_bind()).get_table_names()
    return sorted(n for n in names if n.startswith("geo_") and n.endswith("_registry"))


def upgrade() -> None:
    with op.batch_alter_table("geo_cursor") as batch:
        # The selection the registries follow (JSON; NULL: every item).
        batch.add_column(sa.Column("selection", sa.Text(), nullable=True))
    for name in _registries():
        with op.batch_alter_table(name) as batch:
            for column in LAG_COLUMNS:
                batch.add_column(sa.Column(column, Stamp, nullable=True))
        # The status window ("verified in the last hour") reads the first; the oldest
        # change not yet verified is the first entry of the second. Both are partial,
        # so that each query has one index that fits it (SQLite's planner would answer
        # "IS NULL" from the first and sort).
        op.create_index(f"ix_{name}_change_verified", name, ["change_verified_at"],
                        postgresql_where=sa.text(VERIFIED), sqlite_where=sa.text(VERIFIED))
        op.create_index(f"ix_{name}_change_unverified", name, ["change_committed_at"],
                        postgresql_where=sa.text(UNVERIFIED),
                        sqlite_where=sa.text(UNVERIFIED))


def downgrade() -> None:
    for name in _registries():
        op.drop_index(f"ix_{name}_change_unverified", table_name=name)
        op.drop_index(f"ix_{name}_change_verified", table_name=name)
        with op.batch_alter_table(name) as batch:
            for column in reversed(LAG_COLUMNS):
                batch.drop_column(column)
    with op.batch_alter_table("geo_cursor") as batch:
        batch.drop_column("selection")
