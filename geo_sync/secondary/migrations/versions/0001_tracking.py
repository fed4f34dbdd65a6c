"""Tracking schema: cursor, leases, one registry per data type.

Revision ID: t0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0001"
down_revision = None
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)
REGISTRIES = ("geo_repository_registry", "geo_artifact_registry", "geo_job_log_registry")


def _registry(name: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.String(255), nullable=False, unique=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("mirror_path", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("tombstone", sa.Boolean(), nullable=False),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("lease_until", Stamp, nullable=True),
        sa.Column("enqueued_at", Stamp, nullable=True),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("retry_at", Stamp, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_synced_at", Stamp, nullable=True),
        sa.Column("missing_on_primary", sa.Boolean(), nullable=False),
        sa.Column("expected_size", sa.BigInteger(), nullable=True),
        sa.Column("expected_checksum", sa.String(64), nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.Column("verification_state", sa.String(16), nullable=False),
        sa.Column("verification_checksum", sa.String(64), nullable=True),
        sa.Column("verification_expected", sa.String(64), nullable=True),
        sa.Column("verification_error", sa.Text(), nullable=True),
        sa.Column("verification_retry_count", sa.Integer(), nullable=False),
        sa.Column("verification_retry_at", Stamp, nullable=True),
        sa.Column("verified_at", Stamp, nullable=True),
        sa.Column("mismatch_count", sa.Integer(), nullable=False),
    )
    op.create_index(f"ix_{name}_state_id", name, ["state", "id"])
    op.create_index(f"ix_{name}_state_retry", name, ["state", "retry_at"])
    op.create_index(f"ix_{name}_state_lease", name, ["state", "lease_until"])
    op.create_index(f"ix_{name}_verification", name,
                    ["verification_state", "verification_retry_at"])


def upgrade() -> None:
    op.create_table(
        "geo_cursor",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("last_event_id", sa.BigInteger(), nullable=True),
        sa.Column("last_event_at", Stamp, nullable=True),
        sa.Column("events_applied", sa.BigInteger(), nullable=False),
        sa.Column("backfill_required", sa.Boolean(), nullable=False),
        sa.Column("backfill_progress", sa.Text(), nullable=True),
        sa.Column("primary_pending_events", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", Stamp, nullable=True),
    )
    op.execute("INSERT INTO geo_cursor (id, events_applied, backfill_required) "
               "VALUES (1, 0, true)")
    op.create_table(
        "geo_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("lease_until", Stamp, nullable=True),
    )
    op.execute("INSERT INTO geo_leases (name) VALUES ('log_cursor')")
    for name in REGISTRIES:
        _registry(name)


def downgrade() -> None:
    for name in REGISTRIES:
        op.drop_table(name)
    op.drop_table("geo_leases")
    op.drop_table("geo_cursor")
