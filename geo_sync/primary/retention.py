"""Pruning the event log.

An event is pruned once every healthy secondary has acknowledged it, or once it
is older than the retention limit. A secondary is healthy while it is enabled
and was seen within the retention limit; a silent one stops holding back
pruning. Whenever pruning removes an event that a registered secondary has not
acknowledged, that secondary is flagged ``backfill_required``: the feed then
refuses it (HTTP 410) until it backfills from the catalog and restarts at the
head, so a gap is always noticed, never silently skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, delete, exists, or_, select, true, update

from geo_sync.db import utcnow
from geo_sync.logging import get_logger
from geo_sync.primary.feed import feed_for
from geo_sync.primary.models import Event, Secondary
from geo_sync.primary.secondaries import healthy_since

log = get_logger("retention")


@dataclass(frozen=True)
class PruneResult:
    """What one pruning pass did."""

    deleted: int
    cut_off: list[str]


def prune(conn: Connection, retention_seconds: int, now: datetime | None = None) -> PruneResult:
    """Delete prunable events in the caller's transaction; flag secondaries left behind."""
    feed = feed_for(conn.dialect)
    cutoff = healthy_since(retention_seconds, now or utcnow())
    secondaries = conn.execute(
        select(Secondary.name, Secondary.enabled, Secondary.acked_cursor,
               Secondary.last_seen_at, Secondary.created_at, Secondary.backfill_required)
    ).all()
    held = [
        feed.delivered(s.acked_cursor)
        for s in secondaries
        if s.enabled
        and not s.backfill_required
        and s.acked_cursor
        and (s.last_seen_at or s.created_at) >= cutoff
    ]
    prunable = or_(Event.created_at < cutoff, and_(true(), *held))
    cut_off = [
        s.name
        for s in secondaries
        if not s.backfill_required
        and s.acked_cursor
        and conn.execute(
            select(exists().where(prunable, ~feed.delivered(s.acked_cursor)))
        ).scalar_one()
    ]
    if cut_off:
        conn.execute(
            update(Secondary).where(Secondary.name.in_(cut_off)).values(backfill_required=True)
        )
        log.warning("secondaries_cut_off_by_pruning", secondaries=cut_off,
                    hint="they will backfill from the catalog when they next connect")
    deleted = conn.execute(delete(Event).where(prunable)).rowcount
    if deleted:
        log.info("events_pruned", deleted=deleted)
    return PruneResult(deleted=deleted, cut_off=cut_off)
