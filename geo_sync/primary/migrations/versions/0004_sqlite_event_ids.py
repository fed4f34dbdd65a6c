"""Event ids on SQLite are never reused, even after pruning empties the log.

Without AUTOINCREMENT, SQLite hands out max(id) + 1: once pruning deleted every
event, the next event got id 1 again, which every secondary's cursor ("after
N") had already passed, so it was never delivered, and status showed the
primary's last event as None. AUTOINCREMENT keeps the high-water mark in
sqlite_sequence; it is seeded here with the highest id any event or any
secondary's cursor ever had. PostgreSQL's sequence never went back: no change.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _high_water(bind: sa.Connection) -> int:
    high = bind.execute(sa.text("SELECT coalesce(max(id), 0) FROM geo_events")).scalar_one()
    for (cursor,) in bind.execute(sa.text("SELECT acked_cursor FROM geo_secondaries")):
        prefix, _, last = (cursor or "").partition(";")
        if prefix == "sq1" and last.isdigit():
            high = max(high, int(last))
    return int(high)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    high = _high_water(bind)
    with op.batch_alter_table("geo_events", recreate="always",
                              table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.alter_column("id", existing_type=sa.Integer(), autoincrement=True)
    op.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'geo_events'"))
    op.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('geo_events', :high)")
               .bindparams(high=high))


def downgrade() -> None:
    # Plain INTEGER PRIMARY KEY ids would be reusable again; the table is left as is.
    pass
