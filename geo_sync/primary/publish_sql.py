"""The ``geo_publish()`` SQL function, rendered from publishing's one rule table.

CI systems in other languages publish by calling it, so it cannot call Python; what
it shares with the portable path is rendered in: every refusal (``publish_rules``)
and the accepted (type, event) pairs, read from ``geo_accepted_events``. A migration
that changes the function runs ``op.execute(publish_function_sql())`` (0005 and 0007 did).
The path checks it calls, ``geo_check_item_path``, are 0003's.
"""

from __future__ import annotations

from geo_sync.primary.publish import NOTIFY_CHANNEL
from geo_sync.primary.publish_rules import raise_sql


def _find(key: str) -> str:
    """Lock the catalog row of this type named by record id, else by ``key``."""
    return f"""SELECT * INTO v_row FROM geo_catalog
         WHERE replicable_type = p_type
           AND CASE WHEN p_record_id IS NOT NULL THEN record_id = p_record_id
                    ELSE path = {key} END
           FOR UPDATE;"""  # noqa: S608 - rendered from constants, never from input


def publish_function_sql() -> str:
    """``CREATE OR REPLACE FUNCTION geo_publish(...)``: one event plus its catalog change."""
    return f"""
CREATE OR REPLACE FUNCTION geo_publish(
    p_type text,
    p_event text,
    p_path text,
    p_record_id text DEFAULT NULL,
    p_size bigint DEFAULT NULL,
    p_checksum text DEFAULT NULL,
    p_old_path text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
-- A generic plan cannot use an index for _find's CASE (record id, else path), so after
-- five calls in one session PL/pgSQL's cached plan scanned the whole catalog on every
-- call: a bulk publish of N changes in one session cost O(N^2). Plan per call instead.
SET plan_cache_mode = force_custom_plan
AS $fn$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_row geo_catalog%ROWTYPE;
    v_other geo_catalog%ROWTYPE;
    v_record text;
    v_old_path text;
    v_event_id bigint;
BEGIN
    IF p_type IS NULL OR p_event IS NULL OR NOT EXISTS (
        SELECT 1 FROM geo_accepted_events
         WHERE replicable_type = p_type AND event = p_event) THEN
        {raise_sql("unknown_event", event="p_event", type="p_type")};
    END IF;
    PERFORM geo_check_item_path(p_type, p_path, 'path');
    IF p_record_id IS NOT NULL AND (p_record_id = '' OR octet_length(p_record_id) > 255
                                    OR p_record_id ~ '[\\u0001-\\u001f\\u007f-\\u009f]') THEN
        {raise_sql("bad_record_id")};
    END IF;
    IF p_size IS NOT NULL AND p_size < 0 THEN
        RAISE EXCEPTION 'geo_publish: size must not be negative' USING ERRCODE = '22023';
    END IF;
    IF p_checksum IS NOT NULL AND p_checksum !~ '^[0-9a-f]{{64}}$' THEN
        {raise_sql("bad_checksum")};
    END IF;
    IF p_old_path IS NOT NULL AND p_event <> 'renamed' THEN
        {raise_sql("old_path_not_renamed")};
    END IF;
    IF p_old_path IS NOT NULL THEN
        PERFORM geo_check_item_path(p_type, p_old_path, 'old_path');
    END IF;
    IF p_event = 'renamed' AND p_record_id IS NULL AND p_old_path IS NULL THEN
        {raise_sql("rename_without_source")};
    END IF;

    IF p_event = 'deleted' THEN
        {_find("p_path")}
        IF NOT FOUND THEN
            {raise_sql("delete_unknown", type="p_type", item="coalesce(p_record_id, p_path)")};
        END IF;
        IF v_row.path <> p_path THEN
            {raise_sql("delete_elsewhere", type="p_type", record="v_row.record_id",
                       at="v_row.path", path="p_path")};
        END IF;
        DELETE FROM geo_catalog WHERE id = v_row.id;
        v_record := v_row.record_id;
    ELSIF p_event = 'renamed' THEN
        {_find("p_old_path")}
        IF NOT FOUND THEN
            {raise_sql("rename_unknown", type="p_type", item="coalesce(p_record_id, p_old_path)")};
        END IF;
        IF p_old_path IS NOT NULL AND v_row.path <> p_old_path THEN
            {raise_sql("rename_elsewhere", type="p_type", record="v_row.record_id",
                       at="v_row.path", path="p_old_path")};
        END IF;
        SELECT * INTO v_other FROM geo_catalog
         WHERE replicable_type = p_type AND path = p_path AND id <> v_row.id;
        IF FOUND THEN
            {raise_sql("path_taken", type="p_type", path="p_path", owner="v_other.record_id",
                       record="v_row.record_id")};
        END IF;
        v_old_path := v_row.path;
        v_record := v_row.record_id;
        BEGIN
            UPDATE geo_catalog SET path = p_path, updated_at = v_now WHERE id = v_row.id;
        EXCEPTION WHEN unique_violation THEN
            -- Another transaction took the path between our check and our update.
            {raise_sql("path_taken_meanwhile", type="p_type", path="p_path",
                       record="v_row.record_id")};
        END;
    ELSE
        v_record := coalesce(p_record_id, p_path);
        LOOP
            {_find("p_path")}
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
                {raise_sql("path_taken", type="p_type", path="p_path",
                           owner="v_other.record_id", record="v_record")};
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
            {raise_sql("upsert_elsewhere", type="p_type", record="v_row.record_id",
                       at="v_row.path", path="p_path")};
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
    PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
    RETURN v_event_id;
END
$fn$;
"""  # noqa: S608 - rendered from constants, never from input
