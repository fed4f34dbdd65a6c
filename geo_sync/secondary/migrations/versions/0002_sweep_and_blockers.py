"""Verification fingerprints for the cheap sweep; what a failed row is blocked on.

Revision ID: t0002
Revises: t0001
Create Date: 2026-11-23

Both columns are nullable and read only by new code: safe to apply while the old
code still runs (it neither reads nor writes them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0002"
down_revision = "t0001"
branch_labels = None
depends_on = None

REGISTRIES = ("geo_repository_registry", "geo_artifact_registry", "geo_job_log_registry")


def upgrade() -> None:
    for name in REGISTRIES:
        with op.batch_alter_table(name) as batch:
            # What the copy looked like (size, mtime; refs and packs for a repository)
            # when it was last verified: the sweep compares it with what it sees now.
            batch.add_column(sa.Column("verified_fingerprint", sa.String(64), nullable=True))
            # "primary" or "storage": a failure of the whole site, not of this item; the
            # row is retried as soon as that dependency answers again.
            batch.add_column(sa.Column("blocked_on", sa.String(16), nullable=True))


def downgrade() -> None:
    for name in REGISTRIES:
        with op.batch_alter_table(name) as batch:
            batch.drop_column("blocked_on")
            batch.drop_column("verified_fingerprint")
