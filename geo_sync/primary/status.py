"""What `geo-sync status` shows for a primary, also served at ``/status``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from geo_sync.db import utcnow
from geo_sync.primary import secondaries
from geo_sync.primary.feed import feed_for
from geo_sync.primary.models import CatalogItem, Event
from geo_sync.settings import PrimarySettings
from replicators.registry import REPLICATORS


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
    return {
        "role": "primary",
        "catalog": {name: counts.get(name, 0) for name in REPLICATORS},
        "events_retained": retained,
        "last_event_id": last_event_id,
        "last_event_at": last_at.isoformat() if last_at else None,
        # Lets a secondary measure the clock skew between the two sites.
        "server_time": utcnow().isoformat(),
        "event_retention_seconds": settings.event_retention_seconds,
        "secondaries": [peer.to_json() for peer in peers],
    }
