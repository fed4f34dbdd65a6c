"""geo_publish() reads its accepted (type, event) pairs from a table, not a list.

Until now the function's first check listed every pair by hand, so adding a data
type meant a migration re-creating the whole ~100-line function. The pairs now live
in ``geo_accepted_events``, filled from the data types' classes by
``geo_sync.primary.data_types.accept_data_type`` (the one call a migration for a new
type runs); the portable (SQLite) path consults the same table. The function is
0003's with only that check replaced.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

from geo_sync.primary.data_types import accept_data_type
from geo_sync.primary.publish_sql import publish_function_sql
from replicators.artifact import ArtifactReplicator
from replicators.job_log import JobLogReplicator
from replicators.repository import RepositoryReplicator

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

def _sql_0003() -> str:
    """0003's functions, to put back on downgrade."""
    spec = importlib.util.spec_from_file_location(
        "geo_primary_0003", Path(__file__).with_name("0003_one_rule_set.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.PUBLISH_SQL)


def upgrade() -> None:
    op.create_table(
        "geo_accepted_events",
        sa.Column("replicable_type", sa.String(32), primary_key=True),
        sa.Column("event", sa.String(32), primary_key=True),
    )
    bind = op.get_bind()
    # The three types that existed before the table; later types run this in their own.
    for replicator in (RepositoryReplicator, ArtifactReplicator, JobLogReplicator):
        accept_data_type(bind, replicator)
    if bind.dialect.name == "postgresql":
        op.execute(publish_function_sql())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_sql_0003())
    op.drop_table("geo_accepted_events")
