"""What `geo-sync status` shows for a primary, also served at ``/status``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from geo_sync.db import utcnow
from geo_sync.primary import fencing, secondaries, site_state
from geo_sync.primary.feed import feed_for
from geo_sync.primary.hooks import REJECTED_DIR, SPOOL_DIR
from geo_sync.primary.models import CatalogItem, Event
from geo_sync.settings import PrimarySettings
from replicators.type_names import type_names


def primary_status(settings: PrimarySettings, engine: Engine) -> dict[str, Any]:
    """Catalog counts per type, the event log, and each secondary as the primary sees it."""
    with engine.connect() as conn:
        counts = dict(
            conn.execute(
                select(CatalogItem.replicable_type, func.count()).group_by(
                    CatalogItem.replicable_type
                )
            ).all()
        )
        retained = conn.execute(select(func.count()).select_from(Event)).scalar_one()
        # Not max(id): pruning may have emptied the log, the ids go on.
        last_event_id = feed_for(conn.dialect).last_id(conn)
        last_at = conn.execute(select(Event.created_at).where(Event.id == last_event_id)
                               ).scalar() if last_event_id is not None else None
        peers = secondaries.statuses(conn, settings.event_retention_seconds)
        site = site_state.read_state(conn)
        unfenced = fencing.unfenced(conn)
    return {
        "role": "primary",
        "catalog": {name: counts.get(name, 0) for name in type_names()},
        "events_retained": retained,
        "last_event_id": last_event_id,
        "last_event_at": last_at.isoformat() if last_at else None,
        # Lets a secondary measure the clock skew between the two sites.
        "server_time": utcnow().isoformat(),
        "event_retention_seconds": settings.event_retention_seconds,
        "secondaries": [peer.to_json() for peer in peers],
        # Epoch, maintenance mode and fencing (geo_sync.primary.site_state), and pushes
        # recorded but not yet published (a planned promotion waits for none).
        # Old primaries a forced promotion could not fence yet (`primary serve` retries).
        "site": {**site.to_json(), "pending_pushes": _pending_pushes(settings),
                 "unfenced_old_primaries": unfenced},
    }


def _pending_pushes(settings: PrimarySettings) -> int:
    spool = settings.storage_root / SPOOL_DIR
    try:
        return sum(1 for entry in spool.iterdir()
                   if not entry.name.startswith(".") and entry.name != REJECTED_DIR)
    except FileNotFoundError:
        return 0
