"""geo_publish() follows the Python rules exactly, and a path belongs to one record.

0001's function disagreed with geo_sync.paths and geo_sync.primary.publish: it let
C1 control characters and the reserved temp-file prefix through, and did not apply
the ``.git`` rule to the old path of a rename. It also looped forever when a new
record id was published at a path another record owns, answered a rename onto an
occupied path with a raw unique violation, and wrote a ``deleted`` event for an
item the catalog did not hold (every secondary then removed whatever lay at that
path, a whole directory included).

Now: a collision is refused with SQLSTATE 22023 and a message naming both records
(the same text the SQLite implementation raises), a delete must name a catalogued
item at its own path, and the path rules are those of ``validate_relpath``.
tests/hostile/test_rules.py feeds one hostile corpus to both implementations.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Messages are kept word for word equal to geo_sync.primary.publish's.
PUBLISH_SQL = r"""
CREATE OR REPLACE FUNCTION geo_check_path(p text, field text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    IF p IS NULL OR p = '' THEN
        RAISE EXCEPTION 'geo_publish: % is empty', field USING ERRCODE = '22023';
    END IF;
    IF p ~ '[\u0001-\u001f\u007f-\u009f]' THEN
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
    IF position('/.geo-sync-tmp-' in '/' || p) > 0 THEN
        RAISE EXCEPTION 'geo_publish: % has a component starting with ''.geo-sync-tmp-'', '
            'reserved for geo-sync''s temporary files: %', field, p USING ERRCODE = '22023';
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION geo_check_item_path(p_type text, p text, field text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    PERFORM geo_check_path(p, field);
    IF p_type = 'repository' AND (right(p, 4) <> '.git' OR p ~ '(^|/)\.git$') THEN
        RAISE EXCEPTION 'geo_publish: repository % must end in .git: %', field, p
            USING ERRCODE = '22023';
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION geo_publish(
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
    v_other geo_catalog%ROWTYPE;
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
    PERFORM geo_check_item_path(p_type, p_path, 'path');
    IF p_record_id IS NOT NULL AND (p_record_id = '' OR octet_length(p_record_id) > 255
                                    OR p_record_id ~ '[\u0001-\u001f\u007f-\u009f]') THEN
        RAISE EXCEPTION 'geo_publish: record_id must be 1 to 255 bytes without control characters'
            USING ERRCODE = '22023';
    END IF;
    IF p_size IS NOT NULL AND p_size < 0 THEN
        RAISE EXCEPTION 'geo_publish: size must not be negative' USING ERRCODE = '22023';
    END IF;
    IF p_checksum IS NOT NULL AND p_checksum !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'geo_publish: checksum must be 64 lowercase hex digits (sha256)'
            USING ERRCODE = '22023';
    END IF;
    IF p_old_path IS NOT NULL AND p_event <> 'renamed' THEN
        RAISE EXCEPTION 'geo_publish: old_path is only valid for renamed events'
            USING ERRCODE = '22023';
    END IF;
    IF p_old_path IS NOT NULL THEN
        PERFORM geo_check_item_path(p_type, p_old_path, 'old_path');
    END IF;
    IF p_event = 'renamed' AND p_record_id IS NULL AND p_old_path IS NULL THEN
        RAISE EXCEPTION 'geo_publish: renamed needs record_id or old_path to find the item'
            USING ERRCODE = '22023';
    END IF;

    IF p_event = 'deleted' THEN
        SELECT * INTO v_row FROM geo_catalog
         WHERE replicable_type = p_type
           AND CASE WHEN p_record_id IS NOT NULL THEN record_id = p_record_id
                    ELSE path = p_path END
           FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'geo_publish: cannot delete: the catalog holds no % %', p_type,
                coalesce(p_record_id, p_path) USING ERRCODE = 'P0002';
        END IF;
        IF v_row.path <> p_path THEN
            RAISE EXCEPTION 'geo_publish: % record % is at %, not %; nothing was deleted',
                p_type, v_row.record_id, v_row.path, p_path USING ERRCODE = '22023';
        END IF;
        DELETE FROM geo_catalog WHERE id = v_row.id;
        v_record := v_row.record_id;
    ELSIF p_event = 'renamed' THEN
        SELECT * INTO v_row FROM geo_catalog
         WHERE replicable_type = p_type
           AND CASE WHEN p_record_id IS NOT NULL THEN record_id = p_record_id
                    ELSE path = p_old_path END
           FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'geo_publish: cannot rename: no % %', p_type,
                coalesce(p_record_id, p_old_path) USING ERRCODE = 'P0002';
        END IF;
        IF p_old_path IS NOT NULL AND v_row.path <> p_old_path THEN
            RAISE EXCEPTION 'geo_publish: % record % is at %, not %; nothing was renamed',
                p_type, v_row.record_id, v_row.path, p_old_path USING ERRCODE = '22023';
        END IF;
        SELECT * INTO v_other FROM geo_catalog
         WHERE replicable_type = p_type AND path = p_path AND id <> v_row.id;
        IF FOUND THEN
            RAISE EXCEPTION 'geo_publish: % path % belongs to record %, not %; delete or rename '
                '% first', p_type, p_path, v_other.record_id, v_row.record_id,
                v_other.record_id USING ERRCODE = '22023';
        END IF;
        v_old_path := v_row.path;
        v_record := v_row.record_id;
        BEGIN
            UPDATE geo_catalog SET path = p_path, updated_at = v_now WHERE id = v_row.id;
        EXCEPTION WHEN unique_violation THEN
            -- Another transaction took the path between our check and our update.
            RAISE EXCEPTION 'geo_publish: % path % belongs to another record, not %; delete '
                'or rename it first', p_type, p_path, v_row.record_id USING ERRCODE = '22023';
        END;
    ELSE
        v_record := coalesce(p_record_id, p_path);
        LOOP
            SELECT * INTO v_row FROM geo_catalog
             WHERE replicable_type = p_type
               AND CASE WHEN p_record_id IS NOT NULL THEN record_id = p_record_id
                        ELSE path = p_path END
               FOR UPDATE;
            EXIT WHEN FOUND;
            IF p_record_id IS NULL THEN
                -- The record id defaults to the path: is that record elsewhere?
                SELECT * INTO v_row FROM geo_catalog
                 WHERE replicable_type = p_type AND record_id = v_record FOR UPDATE;
                EXIT WHEN FOUND;
            END IF;
            -- Nothing of this record: the path must be free. A conflicting row that
            -- commits while we insert is seen by the next turn of the loop, so the
            -- loop ends either with our row or with this refusal.
            SELECT * INTO v_other FROM geo_catalog
             WHERE replicable_type = p_type AND path = p_path;
            IF FOUND THEN
                RAISE EXCEPTION 'geo_publish: % path % belongs to record %, not %; delete '
                    'or rename % first', p_type, p_path, v_other.record_id, v_record,
                    v_other.record_id USING ERRCODE = '22023';
            END IF;
            INSERT INTO geo_catalog (replicable_type, record_id, path, size, checksum,
                                     checksum_at, updated_at)
            VALUES (p_type, v_record, p_path, p_size, p_checksum,
                    CASE WHEN p_checksum IS NULL THEN NULL ELSE v_now END, v_now)
            ON CONFLICT DO NOTHING
            RETURNING * INTO v_row;
            EXIT WHEN FOUND;
        END LOOP;
        IF v_row.path <> p_path THEN
            RAISE EXCEPTION 'geo_publish: % record % is at %, not %; publish renamed to move it',
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


def _previous_sql() -> str:
    """0001's functions, to put back on downgrade."""
    spec = importlib.util.spec_from_file_location(
        "geo_primary_0001", Path(__file__).with_name("0001_initial.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.PUBLISH_SQL).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PUBLISH_SQL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS geo_check_item_path(text, text, text)")
        op.execute(_previous_sql())
