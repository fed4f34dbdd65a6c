"""Primary schema: event log, catalog, secondaries, and geo_publish() on PostgreSQL.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)

# geo_publish(): the same rules as geo_sync.primary.publish, for CI systems in any
# language that want to publish inside their own transaction. Frozen here on purpose:
# a later change to the rules is a later migration. tests/primary/test_publish.py
# runs one table of hostile inputs through both implementations.
PUBLISH_SQL = r"""
CREATE FUNCTION geo_check_path(p text, field text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    IF p IS NULL OR p = '' THEN
        RAISE EXCEPTION 'geo_publish: % is empty', field USING ERRCODE = '22023';
    END IF;
    IF p ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'geo_publish: % contains a control character', field
            USING ERRCODE = '22023';
    END IF;
    IF position(E'\\' in p) > 0 THEN
        RAISE EXCEPTION 'geo_publish: % contains a backslash: %', field, p USING ERRCODE = '22023';
    END IF;
    IF octet_length(p) > 4096 THEN
        RAISE EXCEPTION 'geo_publish: % is longer than 4096 bytes', field USING ERRCODE = '22023';
    END IF;
    IF left(p, 1) = '/' THEN
        RAISE EXCEPTION 'geo_publish: % is absolute: %', field, p USING ERRCODE = '22023';
    END IF;
    IF ('/' || p || '/') ~ '/(\.|\.\.)?/' THEN
        RAISE EXCEPTION 'geo_publish: % is not a normalized relative path: %', field, p
            USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(string_to_array(p, '/')) AS part
               WHERE octet_length(part) > 255) THEN
        RAISE EXCEPTION 'geo_publish: % has a component longer than 255 bytes', field
            USING ERRCODE = '22023';
    END IF;
END
$fn$;

CREATE FUNCTION geo_publish(
    p_type text,
    p_event text,
    p_path text,
    p_record_id text DEFAULT NULL,
    p_size bigint DEFAULT NULL,
    p_checksum text DEFAULT NULL,
    p_old_path text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_row geo_catalog%ROWTYPE;
    v_record text;
    v_old_path text;
    v_event_id bigint;
BEGIN
    IF (p_type, p_event) NOT IN (
        ('repository', 'created'), ('repository', 'updated'),
        ('repository', 'renamed'), ('repository', 'deleted'),
        ('artifact', 'created'), ('artifact', 'deleted'),
        ('job_log', 'created'), ('job_log', 'appended'),
        ('job_log', 'archived'), ('job_log', 'deleted')
    ) OR p_type IS NULL OR p_event IS NULL THEN
        RAISE EXCEPTION 'geo_publish: unknown event % for type %', p_event, p_type
            USING ERRCODE = '22023';
    END IF;
    PERFORM geo_check_path(p_path, 'path');
    IF p_type = 'repository' AND p_path !~ '[^/]\.git$' THEN
        RAISE EXCEPTION 'geo_publish: repository path must end in .git: %', p_path
            USING ERRCODE = '22023';
    END IF;
    IF p_record_id IS NOT NULL AND (p_record_id = '' OR octet_length(p_record_id) > 255
                                    OR p_record_id ~ '[[:cntrl:]]') THEN
        RAISE EXCEPTION 'geo_publish: record_id must be 1 to 255 bytes without control characters'
            USING ERRCODE = '22023';
    END IF;
    IF p_size IS NOT NULL AND p_size < 0 THEN
        RAISE EXCEPTION 'geo_publish: size must not be negative' USING ERRCODE = '22023';
    END IF;
    IF p_checksum IS NOT NULL AND p_checksum !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'geo_publish: checksum must be 64 lowercase hex digits'
            USING ERRCODE = '22023';
    END IF;
    IF p_old_path IS NOT NULL AND p_event <> 'renamed' THEN
        RAISE EXCEPTION 'geo_publish: old_path is only valid for renamed events'
            USING ERRCODE = '22023';
    END IF;

    IF p_event = 'deleted' THEN
        DELETE FROM geo_catalog
         WHERE replicable_type = p_type
           AND CASE WHEN p_record_id IS NOT NULL THEN record_id = p_record_id
                    ELSE path = p_path END
        RETURNING record_id INTO v_record;
        v_record := coalesce(v_record, p_record_id, p_path);
    ELSIF p_event = 'renamed' THEN
        IF p_record_id IS NULL AND p_old_path IS NULL THEN
            RAISE EXCEPTION 'geo_publish: renamed needs record_id or old_path'
                USING ERRCODE = '22023';
        END IF;
        IF p_old_path IS NOT NULL THEN
            PERFORM geo_check_path(p_old_path, 'old_path');
        END IF;
        SELECT * INTO v_row FROM geo_catalog
         WHERE replicable_type = p_type
           AND CASE WHEN p_record_id IS NOT NULL THEN record_id = p_record_id
                    ELSE path = p_old_path END
           FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'geo_publish: cannot rename: no % %', p_type,
                coalesce(p_record_id, p_old_path) USING ERRCODE = 'P0002';
        END IF;
        v_old_path := v_row.path;
        v_record := v_row.record_id;
        UPDATE geo_catalog SET path = p_path, updated_at = v_now WHERE id = v_row.id;
    ELSE
        LOOP
            SELECT * INTO v_row FROM geo_catalog
             WHERE replicable_type = p_type
               AND CASE WHEN p_record_id IS NOT NULL THEN record_id = p_record_id
                        ELSE path = p_path END
               FOR UPDATE;
            EXIT WHEN FOUND;
            INSERT INTO geo_catalog (replicable_type, record_id, path, size, checksum,
                                     checksum_at, updated_at)
            VALUES (p_type, coalesce(p_record_id, p_path), p_path, p_size, p_checksum,
                    CASE WHEN p_checksum IS NULL THEN NULL ELSE v_now END, v_now)
            ON CONFLICT DO NOTHING
            RETURNING * INTO v_row;
            EXIT WHEN FOUND;
        END LOOP;
        IF v_row.path <> p_path THEN
            RAISE EXCEPTION 'geo_publish: % % is at %, not %; publish renamed to move it',
                p_type, v_row.record_id, v_row.path, p_path USING ERRCODE = '22023';
        END IF;
        UPDATE geo_catalog
           SET size = p_size, checksum = p_checksum,
               checksum_at = CASE WHEN p_checksum IS NULL THEN NULL ELSE v_now END,
               updated_at = v_now
         WHERE id = v_row.id;
        v_record := v_row.record_id;
    END IF;

    INSERT INTO geo_events (txid, replicable_type, event, record_id, path, payload, created_at)
    VALUES (pg_current_xact_id()::text::bigint, p_type, p_event, v_record, p_path,
            jsonb_strip_nulls(jsonb_build_object('size', p_size, 'checksum', p_checksum,
                                                 'old_path', v_old_path))::json,
            v_now)
    RETURNING id INTO v_event_id;
    PERFORM pg_notify('geo_sync_events', '');
    RETURN v_event_id;
END
$fn$;
"""


def upgrade() -> None:
    op.create_table(
        "geo_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("txid", sa.BigInteger(), nullable=True),
        sa.Column("replicable_type", sa.String(32), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(255), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
    )
    op.create_index("ix_geo_events_txid", "geo_events", ["txid"])
    op.create_index("ix_geo_events_created_at", "geo_events", ["created_at"])
    op.create_table(
        "geo_catalog",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("replicable_type", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(255), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("checksum_at", Stamp, nullable=True),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.UniqueConstraint("replicable_type", "record_id", name="uq_geo_catalog_record"),
        sa.UniqueConstraint("replicable_type", "path", name="uq_geo_catalog_path"),
    )
    op.create_index("ix_geo_catalog_type_id", "geo_catalog", ["replicable_type", "id"])
    op.create_table(
        "geo_secondaries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("acked_cursor", sa.Text(), nullable=True),
        sa.Column("acked_at", Stamp, nullable=True),
        sa.Column("last_seen_at", Stamp, nullable=True),
        sa.Column("backfill_required", sa.Boolean(), nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PUBLISH_SQL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS geo_publish(text, text, text, text, bigint, text, text)"
        )
        op.execute("DROP FUNCTION IF EXISTS geo_check_path(text, text)")
    op.drop_table("geo_secondaries")
    op.drop_table("geo_catalog")
    op.drop_table("geo_events")
