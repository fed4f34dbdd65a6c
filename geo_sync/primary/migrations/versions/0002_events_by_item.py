"""Index events by item, so the catalog can say whether an item changed after a
secondary's cursor.

A verifier that finds its copy different from the primary asks this before
blaming the copy: if the primary changed the item in an event the secondary has
not applied yet, the copy is merely behind (the event is on its way).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_geo_events_item", "geo_events", ["replicable_type", "record_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_geo_events_item", table_name="geo_events")
