"""The log cursor against a real primary: exactly once, hostile events, backfill, 410."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.errors import InvalidInput
from geo_sync.primary import api
from geo_sync.primary.api import create_app
from geo_sync.primary.models import Event, Secondary
from geo_sync.primary.publish import Change, publish
from geo_sync.primary.retention import prune
from geo_sync.secondary.cursor import PAGE_LIMIT, CursorMoved, LogCursor
from geo_sync.secondary.runtime import Runtime, open_runtime
from geo_sync.tracking.models import CursorRow
from geo_sync.wire import EVENTS_MAX_LIMIT, EVENTS_MAX_LIMIT_BEFORE
from replicators.artifact import ArtifactRegistry
from replicators.job_log import JobLogRegistry
from tests.asgi import served_in_thread
from tests.sites import PrimarySite, SecondarySite


@pytest.fixture
def runtime(secondary: SecondarySite) -> Iterator[Runtime]:
    rt = open_runtime(secondary.settings)
    yield rt
    rt.close()


def _publish(primary: PrimarySite, *changes: Change) -> None:
    with write_transaction(primary.engine) as conn:
        for change in changes:
            publish(conn, change)


def _rows(runtime: Runtime, model: type[ArtifactRegistry] = ArtifactRegistry
          ) -> dict[str, tuple[int, bool]]:
    with runtime.engine.connect() as conn:
        return {r.record_id: (r.generation, r.tombstone) for r in conn.execute(
            select(model.record_id, model.generation, model.tombstone))}


def test_a_first_start_backfills_existing_items_then_follows_events(
    primary: PrimarySite, runtime: Runtime
) -> None:
    _publish(primary, Change("artifact", "created", "before.bin", size=1))
    cursor = LogCursor(runtime)
    cursor.run_once(wait=0)  # backfill
    assert _rows(runtime) == {"before.bin": (1, False)}
    _publish(primary, Change("artifact", "created", "after.bin", size=1),
             Change("artifact", "deleted", "before.bin"))
    assert cursor.run_once(wait=0) == 2
    assert _rows(runtime) == {"before.bin": (2, True), "after.bin": (1, False)}


def test_a_page_is_applied_exactly_once_even_if_delivered_twice(
    primary: PrimarySite, runtime: Runtime
) -> None:
    cursor = LogCursor(runtime)
    cursor.run_once(wait=0)
    _publish(primary, Change("artifact", "created", "a.bin", size=1))
    old, _ = cursor.position()
    assert old is not None
    page = runtime.client.events(old, limit=100, wait=0)
    cursor.apply(old, page)
    with pytest.raises(CursorMoved):
        cursor.apply(old, page)  # e.g. a second cursor process, or a retry after a crash
    assert _rows(runtime) == {"a.bin": (1, False)}
    with runtime.engine.connect() as conn:
        assert conn.execute(select(CursorRow.events_applied)).scalar_one() == 1


def test_hostile_events_are_refused_and_the_feed_keeps_moving(
    primary: PrimarySite, runtime: Runtime
) -> None:
    cursor = LogCursor(runtime)
    cursor.run_once(wait=0)
    with write_transaction(primary.engine) as conn:  # bypass the primary's own validation
        for path in ("../../etc/passwd", "/abs/x", "a/../../b"):
            values = {"replicable_type": "artifact", "event": "created", "record_id": path,
                      "path": path, "payload": {}, "created_at": utcnow()}
            if primary.settings.database_url.startswith("postgresql"):
                values["txid"] = conn.exec_driver_sql(
                    "SELECT pg_current_xact_id()::text::bigint").scalar_one()
            conn.execute(insert(Event).values(values))
        publish(conn, Change("artifact", "created", "fine.bin", size=1))
    cursor.run_once(wait=0)
    assert _rows(runtime) == {"fine.bin": (1, False)}
    with runtime.engine.connect() as conn:
        error = conn.execute(select(CursorRow.last_error)).scalar_one()
    assert "not a normalized relative path" in error and "absolute" in error


def test_after_pruning_past_its_cursor_the_secondary_backfills_and_loses_nothing(
    primary: PrimarySite, runtime: Runtime
) -> None:
    _publish(primary, Change("job_log", "created", "stays.log", size=1),
             Change("job_log", "created", "goes.log", size=1))
    cursor = LogCursor(runtime)
    cursor.run_once(wait=0)
    assert set(_rows(runtime, JobLogRegistry)) == {"stays.log", "goes.log"}
    # While the secondary is silent past retention, things change and the log is pruned.
    _publish(primary, Change("job_log", "deleted", "goes.log"),
             Change("job_log", "created", "new.log", size=1))
    with write_transaction(primary.engine) as conn:
        conn.execute(update(Secondary).values(last_seen_at=utcnow() - timedelta(days=30),
                                              created_at=utcnow() - timedelta(days=30)))
        result = prune(conn, 3600)
    assert result.cut_off == ["s1"]
    assert cursor.run_once(wait=0) == 0  # the feed answered 410
    with runtime.engine.connect() as conn:
        assert conn.execute(select(CursorRow.backfill_required)).scalar_one()
    cursor.run_once(wait=0)  # backfill
    rows = _rows(runtime, JobLogRegistry)
    assert rows["goes.log"][1] is True, "the deletion we never heard of was found"
    assert rows["new.log"] == (1, False)
    assert rows["stays.log"][1] is False
    with primary.engine.connect() as conn:
        flagged = conn.execute(select(func.count()).where(Secondary.backfill_required)
                               ).scalar_one()
    assert flagged == 0


def _backlog(primary: PrimarySite, events: int, items: int) -> None:
    """``events`` artifact events over ``items`` items, committed at once."""
    with write_transaction(primary.engine) as conn:
        txid = (conn.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one()
                if primary.settings.database_url.startswith("postgresql") else None)
        conn.execute(insert(Event), [
            {"replicable_type": "artifact", "event": "created", "record_id": f"r{n % items}",
             "path": f"p/{n % items}.bin", "payload": {"size": n}, "created_at": utcnow(),
             **({"txid": txid} if txid is not None else {})}
            for n in range(events)])


def test_a_backlog_of_several_pages_is_applied_exactly_once_while_the_next_page_is_fetched(
    primary: PrimarySite, runtime: Runtime
) -> None:
    events, items = 2 * PAGE_LIMIT + 300, 700
    woken = []
    cursor = LogCursor(runtime, on_applied=lambda: woken.append(1))
    cursor.run_once(wait=0)
    _backlog(primary, events, items)
    applied = 0
    while applied < events:
        applied += cursor.run_once(wait=0)
    cursor.close()
    assert applied == events
    # Item r{k} had one event per n = k (mod items): its generation counts them.
    expected = {f"r{k}": (len(range(k, events, items)), False) for k in range(items)}
    assert _rows(runtime) == expected
    assert woken, "the scheduler was never woken"


def test_a_page_fetched_ahead_for_a_position_another_cursor_moved_past_is_dropped(
    primary: PrimarySite, runtime: Runtime
) -> None:
    events, items = 3 * PAGE_LIMIT, 500
    first, other = LogCursor(runtime), LogCursor(runtime)
    first.run_once(wait=0)
    _backlog(primary, events, items)
    assert first.run_once(wait=0) == PAGE_LIMIT  # and fetches the second page ahead
    assert other.run_once(wait=0) == PAGE_LIMIT  # another process applies that page
    assert first.run_once(wait=0) == PAGE_LIMIT  # so this one must read the third
    first.close()
    other.close()
    expected = {f"r{k}": (len(range(k, events, items)), False) for k in range(items)}
    assert _rows(runtime) == expected
    with runtime.engine.connect() as conn:
        assert conn.execute(select(CursorRow.events_applied)).scalar_one() == events


def test_a_primary_that_serves_smaller_pages_is_followed_in_pages_of_its_size(
    primary: PrimarySite, secondary: SecondarySite, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same primary code as `primary serve`, in this process, with the page limit
    # every primary had before pages of EVENTS_MAX_LIMIT: it refuses larger ones.
    monkeypatch.setattr(api, "EVENTS_MAX_LIMIT", EVENTS_MAX_LIMIT_BEFORE)
    with served_in_thread(create_app(primary.settings, primary.engine)) as url:
        runtime = open_runtime(secondary.settings.model_copy(update={"primary_url": url}))
        cursor = LogCursor(runtime)
        cursor.run_once(wait=0)
        events, items = 2 * EVENTS_MAX_LIMIT_BEFORE + 10, 300
        _backlog(primary, events, items)
        assert cursor.run_once(wait=0) == EVENTS_MAX_LIMIT_BEFORE
        assert runtime.client.events_limit == EVENTS_MAX_LIMIT_BEFORE
        applied = EVENTS_MAX_LIMIT_BEFORE
        while applied < events:
            applied += cursor.run_once(wait=0)
        cursor.close()
        # Any other refusal is still an error, and does not lower the pages again.
        with pytest.raises(InvalidInput, match="cursor"):
            runtime.client.events("not-a-cursor", limit=PAGE_LIMIT, wait=0)
        assert runtime.client.events_limit == EVENTS_MAX_LIMIT_BEFORE
        runtime.close()
    assert applied == events
    expected = {f"r{k}": (len(range(k, events, items)), False) for k in range(items)}
    assert _rows(runtime) == expected


def test_the_feed_serves_pages_of_its_maximum_and_refuses_larger_ones_by_name(
    primary: PrimarySite, runtime: Runtime
) -> None:
    cursor = LogCursor(runtime)
    cursor.run_once(wait=0)
    start, _ = cursor.position()
    assert start is not None
    _backlog(primary, EVENTS_MAX_LIMIT + 1, 50)
    page = runtime.client.events(start, limit=PAGE_LIMIT, wait=0)
    assert PAGE_LIMIT == EVENTS_MAX_LIMIT == len(page.events) and page.more
    with primary.client() as http:
        refused = http.get("/events", headers=primary.headers(), params={
            "cursor": start, "limit": EVENTS_MAX_LIMIT + 1})
    assert refused.status_code == 400
    assert f"limit must be between 1 and {EVENTS_MAX_LIMIT}" in refused.json()["message"]
    assert runtime.client.events_limit == EVENTS_MAX_LIMIT
    cursor.close()
