"""Pruning: acknowledged events go, silent secondaries stop holding the log, gaps are flagged."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, func, select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.primary.feed import feed_for
from geo_sync.primary.models import Event, Secondary
from geo_sync.primary.publish import Change, publish
from geo_sync.primary.retention import prune
from geo_sync.primary.secondaries import (
    acknowledge,
    add_secondary,
    is_backfill_required,
    restart_at_head,
    statuses,
)

RETENTION = 3600


def _publish(engine: Engine, *paths: str) -> None:
    with write_transaction(engine) as conn:
        for path in paths:
            publish(conn, Change("artifact", "created", path))


def _ack_everything(engine: Engine, name: str) -> None:
    with write_transaction(engine) as conn:
        feed = feed_for(conn.dialect)
        page = feed.read(conn, feed.start(), 1000)
        acknowledge(conn, name, page.cursor)


def _remaining(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Event)).scalar_one()


def test_events_stay_until_every_healthy_secondary_acknowledged_them(
    primary_engine: Engine,
) -> None:
    with write_transaction(primary_engine) as conn:
        add_secondary(conn, "a")
        add_secondary(conn, "b")
    _publish(primary_engine, "1.bin", "2.bin")
    _ack_everything(primary_engine, "a")
    with write_transaction(primary_engine) as conn:
        assert prune(conn, RETENTION).deleted == 0
    _ack_everything(primary_engine, "b")
    with write_transaction(primary_engine) as conn:
        result = prune(conn, RETENTION)
    assert result.deleted == 2
    assert result.cut_off == []
    assert _remaining(primary_engine) == 0


def test_a_secondary_silent_past_retention_no_longer_holds_pruning_and_must_backfill(
    primary_engine: Engine,
) -> None:
    with write_transaction(primary_engine) as conn:
        add_secondary(conn, "live")
        add_secondary(conn, "silent")
    _publish(primary_engine, "1.bin")
    _ack_everything(primary_engine, "live")
    long_ago = utcnow() - timedelta(seconds=RETENTION * 2)
    with write_transaction(primary_engine) as conn:
        conn.execute(update(Secondary).where(Secondary.name == "silent")
                     .values(last_seen_at=long_ago, created_at=long_ago))
        result = prune(conn, RETENTION)
    assert result.deleted == 1
    assert result.cut_off == ["silent"]
    with primary_engine.connect() as conn:
        assert is_backfill_required(conn, "silent")
        shown = {s.name: s for s in statuses(conn, RETENTION)}
    assert shown["silent"].backfill_required and not shown["silent"].healthy
    assert shown["live"].healthy and not shown["live"].backfill_required
    with write_transaction(primary_engine) as conn:
        restart_at_head(conn, "silent")
        assert not is_backfill_required(conn, "silent")


def test_events_older_than_retention_go_even_if_unacknowledged(primary_engine: Engine) -> None:
    with write_transaction(primary_engine) as conn:
        add_secondary(conn, "behind")
    _publish(primary_engine, "old.bin", "new.bin")
    with write_transaction(primary_engine) as conn:
        conn.execute(update(Event).where(Event.path == "old.bin")
                     .values(created_at=utcnow() - timedelta(seconds=RETENTION + 5)))
        result = prune(conn, RETENTION)
    assert result.deleted == 1
    assert result.cut_off == ["behind"]
    assert _remaining(primary_engine) == 1
