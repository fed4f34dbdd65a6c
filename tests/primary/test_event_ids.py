"""Event ids go on after pruning empties the log: a secondary's cursor never passes an
event it has not seen, and status names the primary's last event."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, delete, text, update

from geo_sync.db import make_engine, write_transaction
from geo_sync.migrate import PRIMARY
from geo_sync.primary.feed import feed_for
from geo_sync.primary.models import Event, Secondary
from geo_sync.primary.publish import Change, publish
from geo_sync.primary.retention import prune
from geo_sync.primary.secondaries import acknowledge, add_secondary
from geo_sync.primary.status import primary_status
from geo_sync.settings import PrimarySettings


def _publish(engine: Engine, path: str) -> int:
    with write_transaction(engine) as conn:
        return publish(conn, Change("artifact", "created", path))


def test_an_event_after_a_prune_that_emptied_the_log_reaches_the_secondary(
        primary_engine: Engine, tmp_path: Path) -> None:
    with write_transaction(primary_engine) as conn:
        add_secondary(conn, "east")
    first, second = _publish(primary_engine, "a"), _publish(primary_engine, "b")
    with write_transaction(primary_engine) as conn:
        feed = feed_for(conn.dialect)
        cursor = feed.read(conn, feed.start(), 100).cursor
        acknowledge(conn, "east", cursor)
        assert prune(conn, 3600).deleted == 2
    settings = PrimarySettings(database_url="sqlite:///unused.db", storage_root=tmp_path)
    report = primary_status(settings, primary_engine)
    assert report["events_retained"] == 0
    assert report["last_event_id"] == second
    third = _publish(primary_engine, "c")
    assert third > second > first
    with primary_engine.connect() as conn:
        page = feed_for(conn.dialect).read(conn, cursor, 100)
    assert [event.path for event in page.events] == ["c"]
    assert primary_status(settings, primary_engine)["last_event_id"] == third


def test_last_event_id_is_none_before_the_first_event(primary_engine: Engine) -> None:
    with primary_engine.connect() as conn:
        assert feed_for(conn.dialect).last_id(conn) is None


def test_the_migration_carries_the_high_water_mark_of_a_pruned_sqlite_log(
        tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    PRIMARY.upgrade(engine, "0002")
    with write_transaction(engine) as conn:
        conn.execute(text("INSERT INTO geo_secondaries (name, secret, enabled, acked_cursor, "
                          "backfill_required, created_at) VALUES ('east', 's', 1, 'sq1;0', "
                          "0, '2026-01-01 00:00:00')"))
        for path in ("a", "b", "c"):
            conn.execute(text("INSERT INTO geo_events (replicable_type, event, record_id, "
                              "path, payload, created_at) VALUES ('artifact', 'created', "
                              ":p, :p, '{}', '2026-01-01 00:00:00')"), {"p": path})
        # The old schema's bug: a secondary had seen up to 7, then the log was emptied.
        conn.execute(update(Secondary).values(acked_cursor="sq1;7"))
        conn.execute(delete(Event))
    PRIMARY.upgrade(engine)
    assert _publish(engine, "d") == 8
    engine.dispose()
