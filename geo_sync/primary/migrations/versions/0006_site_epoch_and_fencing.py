"""The site's own state: its epoch, maintenance mode and whether it was demoted.

One row (id 1). ``epoch`` is bumped by every promotion; the Geo API sends it on every
response (``X-Geo-Epoch``) so secondaries refuse a site older than one they already
followed. While ``maintenance`` is on or the site is ``demoted`` nothing may be
published: on PostgreSQL a BEFORE INSERT trigger on ``geo_events`` refuses every path
(``geo_publish()``, the Python API, the CLI, scan) with SQLSTATE 55G01 (maintenance)
or 55G02 (demoted); the portable (SQLite) path checks the same row in Python. Pushes
the git server accepted before maintenance began (waiting in the push spool) are
still published during maintenance; nothing is published once demoted.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION geo_refuse_when_read_only() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    v_site geo_site%ROWTYPE;
BEGIN
    SELECT * INTO v_site FROM geo_site WHERE id = 1;
    IF FOUND AND v_site.demoted THEN
        RAISE EXCEPTION 'geo_publish: this site (epoch %) was demoted; the primary is now %',
            v_site.epoch, coalesce(v_site.new_primary_url, 'another site')
            USING ERRCODE = '55G02';
    END IF;
    -- A push the git server accepted before maintenance began is published still
    -- (the spool's drain sets geo_sync.accepted_push): it is a write already made.
    IF FOUND AND v_site.maintenance
       AND coalesce(current_setting('geo_sync.accepted_push', true), '') <> 'on' THEN
        RAISE EXCEPTION 'geo_publish: the primary is in maintenance mode (%)',
            coalesce(nullif(v_site.maintenance_reason, ''), 'no reason given')
            USING ERRCODE = '55G01';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER geo_events_read_only BEFORE INSERT ON geo_events
    FOR EACH ROW EXECUTE FUNCTION geo_refuse_when_read_only();
"""


def upgrade() -> None:
    op.create_table(
        "geo_site",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("epoch", sa.BigInteger, nullable=False, server_default="1"),
        sa.Column("maintenance", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("maintenance_reason", sa.Text),
        sa.Column("maintenance_since", sa.DateTime(timezone=True)),
        sa.Column("demoted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("new_primary_url", sa.Text),
        sa.Column("changed_at", sa.DateTime(timezone=True)),
    )
    op.execute(sa.text("INSERT INTO geo_site (id, epoch, maintenance, demoted) "
                       "VALUES (1, 1, false, false)"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TRIGGER_SQL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS geo_events_read_only ON geo_events")
        op.execute("DROP FUNCTION IF EXISTS geo_refuse_when_read_only()")
    op.drop_table("geo_site")
