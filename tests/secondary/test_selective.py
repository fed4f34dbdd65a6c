"""Selective sync in the cursor, the backfill and `reselect`, and per-item lag in the
registry, against a real primary on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert, select

from geo_sync.db import utcnow, write_transaction
from geo_sync.primary.models import Event
from geo_sync.primary.publish import Change, publish
from geo_sync.secondary import reselect
from geo_sync.secondary.cursor import LogCursor
from geo_sync.secondary.runtime import Runtime, open_runtime
from geo_sync.selection import EVERYTHING, Selection
from geo_sync.tracking import lag, sync_rows, verification_rows
from replicators.artifact import ArtifactRegistry
from replicators.type_map import REPLICATORS
from tests.sites import PrimarySite, SecondarySite
from verification.drift import find_drift
from verification.recovery import plan_orphans

ONLY_KEEP = Selection.of({"artifact": ["keep"]})


@pytest.fixture
def runtime(secondary: SecondarySite) -> Iterator[Runtime]:
    rt = open_runtime(secondary.settings)
    yield rt
    rt.close()


def _publish(primary: PrimarySite, *paths: str, event: str = "created") -> None:
    with write_transaction(primary.engine) as conn:
        for path in paths:
            publish(conn, Change("artifact", event, path, size=1))


def _paths(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(ArtifactRegistry.path)).scalars())


def test_the_cursor_and_the_backfill_record_only_selected_items(
        primary: PrimarySite, runtime: Runtime) -> None:
    _publish(primary, "keep/1.bin", "drop/1.bin")
    reselect.apply(runtime.engine, ONLY_KEEP)
    cursor = LogCursor(runtime)
    cursor.run_once(wait=0)  # backfill
    assert _paths(runtime.engine) == {"keep/1.bin"}
    _publish(primary, "keep/2.bin", "drop/2.bin", "keeper/1.bin")
    assert cursor.run_once(wait=0) == 3  # every event is read; only selected ones recorded
    assert _paths(runtime.engine) == {"keep/1.bin", "keep/2.bin"}


def test_narrowing_forgets_rows_and_lists_their_copies_as_orphans_widening_brings_them_back(
        primary: PrimarySite, runtime: Runtime) -> None:
    _publish(primary, "keep/1.bin", "drop/1.bin")
    cursor = LogCursor(runtime)
    cursor.run_once(wait=0)
    assert _paths(runtime.engine) == {"keep/1.bin", "drop/1.bin"}
    copy = runtime.settings.mirror_root / REPLICATORS["artifact"].storage_dir / "drop/1.bin"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"x")

    change = reselect.plan(runtime.engine, ONLY_KEEP)
    assert change.changed and change.leaving["artifact"] == 1
    assert reselect.apply(runtime.engine, ONLY_KEEP)
    assert not reselect.apply(runtime.engine, ONLY_KEEP), "applying it again changes nothing"
    assert _paths(runtime.engine) == {"keep/1.bin", "drop/1.bin"}, "nothing until the cursor"
    cursor.run_once(wait=0)  # the backfill the change asked for
    assert _paths(runtime.engine) == {"keep/1.bin"}
    assert copy.exists(), "a copy is removed only by `orphans --delete`"
    [orphan] = plan_orphans(runtime.engine, runtime.settings.mirror_root)
    assert (orphan.path, orphan.detail) == ("drop/1.bin",
                                            "not selected any more (the selection changed)")
    assert not [f for f in find_drift(runtime.engine, runtime.settings.mirror_root)
                if f.kind == "missing_on_mirror"]

    reselect.apply(runtime.engine, EVERYTHING)
    cursor.run_once(wait=0)
    assert _paths(runtime.engine) == {"keep/1.bin", "drop/1.bin"}


def test_a_page_read_before_a_reselect_is_applied_under_the_new_selection(
        primary: PrimarySite, runtime: Runtime) -> None:
    cursor = LogCursor(runtime)
    cursor.run_once(wait=0)
    _publish(primary, "drop/1.bin", "keep/1.bin")
    old, _ = cursor.position()
    assert old is not None
    page = runtime.client.events(old, limit=100, wait=0)  # e.g. a long-poll in flight
    reselect.apply(runtime.engine, ONLY_KEEP)
    assert cursor.apply(old, page) == 2
    assert _paths(runtime.engine) == {"keep/1.bin"}


def test_each_row_records_its_changes_commit_then_when_it_was_synced_and_verified(
        primary: PrimarySite, runtime: Runtime) -> None:
    cursor = LogCursor(runtime)
    cursor.run_once(wait=0)
    _publish(primary, "a.bin")
    cursor.run_once(wait=0)
    with primary.engine.connect() as conn:
        committed = conn.execute(select(Event.created_at)).scalar_one()
    model = ArtifactRegistry
    with write_transaction(runtime.engine) as conn:
        [item] = sync_rows.claim(conn, model, list(conn.execute(select(model.id)).scalars()),
                                 "w1", lease_seconds=30)
        assert not sync_rows.finish_synced_many(conn, model, [item], "w1")
        [check] = verification_rows.claim(conn, model, [item.id], lease_seconds=30)
        assert verification_rows.succeeded(conn, model, check, "0" * 64)
    with runtime.engine.connect() as conn:
        row = conn.execute(select(model)).one()
        assert row.change_committed_at == committed
        assert row.change_committed_at <= row.change_synced_at <= row.change_verified_at
        first_verified = row.change_verified_at
    with write_transaction(runtime.engine) as conn:  # re-verification keeps the first time
        verification_rows.request(conn, model, [item.id])
        [check] = verification_rows.claim(conn, model, [item.id], lease_seconds=30)
        assert verification_rows.succeeded(conn, model, check, "0" * 64)
    with runtime.engine.connect() as conn:
        assert conn.execute(select(model.change_verified_at)).scalar_one() == first_verified
    _publish(primary, "a.bin")  # uploaded again
    cursor.run_once(wait=0)
    with runtime.engine.connect() as conn:
        row = conn.execute(select(model)).one()
        assert row.change_committed_at > committed
        assert (row.change_synced_at, row.change_verified_at) == (None, None)


# Each example empties the registry first, so sharing the database is sound.
@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.floats(min_value=0, max_value=5000, allow_nan=False), max_size=40),
       st.lists(st.floats(min_value=1, max_value=5000), max_size=5))
def test_the_lag_summary_is_nearest_rank_over_the_window_and_names_the_oldest_wait(
        tracking_engine: Engine, lags: list[float], waiting: list[float]) -> None:
    model, now = ArtifactRegistry, utcnow()
    rows = [{**sync_rows.new_row(f"v{i}", f"v{i}"), "change_committed_at":
             now - timedelta(seconds=10 + lag_seconds),
             "change_verified_at": now - timedelta(seconds=10)}
            for i, lag_seconds in enumerate(lags)]
    # Verified before the window: not counted, however slow.
    rows.append({**sync_rows.new_row("old", "old"),
                 "change_committed_at": now - timedelta(days=3),
                 "change_verified_at": now - timedelta(days=2)})
    rows += [{**sync_rows.new_row(f"w{i}", f"w{i}"),
              "change_committed_at": now - timedelta(seconds=age), "change_verified_at": None}
             for i, age in enumerate(waiting)]
    with write_transaction(tracking_engine) as conn:
        conn.execute(delete(model))
        conn.execute(insert(model), rows)
        found = lag.summary(conn, model, 3600, now)
    assert found.samples == len(lags)
    ordered = sorted(lags)
    if lags:
        assert found.p50_seconds == pytest.approx(ordered[(len(lags) + 1) // 2 - 1], abs=1e-3)
        assert found.max_seconds == pytest.approx(ordered[-1], abs=1e-3)
        assert found.p50_seconds <= found.p99_seconds <= found.max_seconds
    else:
        assert found.p50_seconds is None
    if waiting:
        assert found.oldest_unverified_age_seconds == pytest.approx(max(waiting), abs=1e-3)
    else:
        assert found.oldest_unverified_at is None


def test_reselect_says_what_it_would_do_and_refuses_a_bad_pattern_in_one_line(
        primary: PrimarySite, secondary: SecondarySite) -> None:
    _publish(primary, "keep/1.bin", "drop/1.bin")
    runtime = open_runtime(secondary.settings)
    try:
        LogCursor(runtime).run_once(wait=0)
    finally:
        runtime.close()
    config = secondary.config
    original = config.read_text()
    config.write_text(original + '\n[secondary.selection]\ninclude = { artifact = ["keep"] }\n')
    status = json.loads(secondary.cli("status", "--json", check=False).stdout)
    assert status["selection"]["config_differs"] and not status["selection"]["selective"]
    dry = secondary.cli("secondary", "reselect", "--dry-run", check=False)
    assert dry.returncode == 1
    assert "artifact: 1 item(s) held now leave the selection" in dry.stdout
    assert _paths(secondary.engine) == {"keep/1.bin", "drop/1.bin"}, "a dry run changes nothing"
    secondary.cli("secondary", "reselect")
    status = json.loads(secondary.cli("status", "--json", check=False).stdout)
    assert status["selection"]["selective"] and not status["selection"]["config_differs"]
    assert status["selection"]["rules"] == ["artifact: include keep"]
    assert "already applied" in secondary.cli("secondary", "reselect").stdout

    config.write_text(original + '\n[secondary.selection]\nexclude = ["keep/../x"]\n')
    bad = secondary.cli("secondary", "reselect", check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    [line] = [line for line in bad.stderr.splitlines() if "keep/../x" in line]
    assert "secondary.selection.exclude" in line and "'..'" in line
