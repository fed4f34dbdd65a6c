"""An old primary cannot take writes by accident after an unplanned promotion.

* ``geo_site.serving_since``: set when `primary serve` starts, cleared when it stops
  cleanly. Found set at the next start, the site was not shut down cleanly (crash,
  kill -9, power loss): another site may have been promoted meanwhile.
* ``geo_site.unconfirmed_since`` and ``geo_secondaries.epoch_unconfirmed``: after
  such a start, publishing is refused until every secondary that was following the
  site before the crash has reached it at its own epoch (nobody promoted), or an
  operator confirms. The trigger refuses with SQLSTATE 55G03 while any such enabled
  secondary has not confirmed (the portable path checks the same in Python).
* ``geo_fence_targets``: on a promoted site, an old primary a forced promotion could
  not fence, with what authenticates the fence there; `primary serve` keeps trying.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UNCONFIRMED_SQL = """
    -- After an unclean shutdown another site may have been promoted: nothing is
    -- published (not even an accepted push) until the epoch is confirmed.
    IF FOUND AND v_site.unconfirmed_since IS NOT NULL THEN
        SELECT string_agg(name, ', ' ORDER BY name) INTO v_waiting FROM geo_secondaries
            WHERE epoch_unconfirmed AND enabled;
        IF v_waiting IS NOT NULL THEN
            RAISE EXCEPTION 'geo_publish: unclean shutdown: waiting for epoch confirmation '
                '(epoch %, from secondary %)', v_site.epoch, v_waiting
                USING ERRCODE = '55G03';
        END IF;
    END IF;
"""

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION geo_refuse_when_read_only() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    v_site geo_site%ROWTYPE;
    v_waiting text;
BEGIN
    SELECT * INTO v_site FROM geo_site WHERE id = 1;
    IF FOUND AND v_site.demoted THEN
        RAISE EXCEPTION 'geo_publish: this site (epoch %) was demoted; the primary is now %',
            v_site.epoch, coalesce(v_site.new_primary_url, 'another site')
            USING ERRCODE = '55G02';
    END IF;
    %(unconfirmed)s
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
"""


def trigger_sql(*, unconfirmed: bool) -> str:
    """The trigger function, with (this revision) or without (0006) the unclean check."""
    return TRIGGER_SQL.replace("    %(unconfirmed)s\n", UNCONFIRMED_SQL if unconfirmed else "")


def upgrade() -> None:
    op.add_column("geo_site", sa.Column("serving_since", sa.DateTime(timezone=True)))
    op.add_column("geo_site", sa.Column("unconfirmed_since", sa.DateTime(timezone=True)))
    op.add_column("geo_secondaries", sa.Column("epoch_unconfirmed", sa.Boolean,
                                               nullable=False, server_default=sa.false()))
    op.create_table(
        "geo_fence_targets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("new_primary_url", sa.Text, nullable=False),
        sa.Column("caller_name", sa.String(64), nullable=False),
        sa.Column("caller_secret", sa.String(128), nullable=False),
        sa.Column("ca_bundle", sa.Text),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.Column("fenced_at", sa.DateTime(timezone=True)),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(trigger_sql(unconfirmed=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(trigger_sql(unconfirmed=False))
    op.drop_table("geo_fence_targets")
    with op.batch_alter_table("geo_secondaries") as batch:
        batch.drop_column("epoch_unconfirmed")
    with op.batch_alter_table("geo_site") as batch:
        batch.drop_column("unconfirmed_since")
        batch.drop_column("serving_since")
