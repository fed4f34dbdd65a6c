"""geo_publish() plans each call with its own arguments (plan_cache_mode).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

A session that called geo_publish() more than five times switched to PL/pgSQL's
generic plan, which cannot use an index for the catalog lookup (record id, else path):
every later call scanned the whole catalog, so a bulk publish grew quadratically. The
function now carries ``SET plan_cache_mode = force_custom_plan`` (publish_sql renders it).
"""

from __future__ import annotations

from alembic import op

from geo_sync.primary.publish_sql import publish_function_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(publish_function_sql())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION geo_publish(text, text, text, text, bigint, text, text) "
                   "RESET plan_cache_mode")
