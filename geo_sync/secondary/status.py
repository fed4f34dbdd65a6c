"""What `geo-sync status` reports for a secondary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from geo_sync.db import utcnow
from geo_sync.secondary import registry
from geo_sync.secondary.client import PrimaryClient
from geo_sync.secondary.models import CursorRow
from replicators.registry import REPLICATORS

LAST_ERRORS = 10


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def secondary_status(engine: Engine, client: PrimaryClient | None, name: str) -> dict[str, Any]:
    """Counts per type, cursor position and lag, and the most recent errors."""
    with engine.connect() as conn:
        types = {r.name: registry.counts(conn, r.registry) for r in REPLICATORS.values()}
        cursor = conn.execute(select(CursorRow).where(CursorRow.id == 1)).one()
        blocked: dict[str, int] = {}
        for replicator in REPLICATORS.values():
            for blocker, count in registry.blocked_counts(conn, replicator.registry).items():
                blocked[blocker] = blocked.get(blocker, 0) + count
        errors = []
        for replicator in REPLICATORS.values():
            model = replicator.registry
            rows = conn.execute(
                select(model.record_id, model.path, model.last_error, model.updated_at,
                       model.retry_at, model.missing_on_primary)
                .where(model.last_error.is_not(None), model.state != "synced")
                .order_by(model.updated_at.desc()).limit(LAST_ERRORS)
            ).all()
            errors += [{"type": replicator.name, "record_id": r.record_id, "path": r.path,
                        "error": r.last_error, "at": _iso(r.updated_at),
                        "retry_at": _iso(r.retry_at),
                        "missing_on_primary": r.missing_on_primary} for r in rows]
    errors.sort(key=lambda e: e["at"] or "", reverse=True)
    primary: dict[str, Any] = {"queried": client is not None, "reachable": False}
    if client is not None:
        try:
            report = client.status()
            mine: dict[str, Any] = next(
                (s for s in report["secondaries"] if s["name"] == name), {})
            primary = {"queried": True, "reachable": True,
                       "last_event_id": report["last_event_id"],
                       "pending_events": mine.get("pending_events"),
                       "backfill_required": mine.get("backfill_required")}
        except Exception as exc:
            primary = {"queried": True, "reachable": False, "error": str(exc)}
    pending = primary.get("pending_events") or 0
    lag_seconds = 0.0
    if pending and cursor.last_event_at:
        lag_seconds = (utcnow() - cursor.last_event_at).total_seconds()
    return {
        "role": "secondary",
        "name": name,
        "types": types,
        "cursor": {
            "last_event_id_processed": cursor.last_event_id,
            "last_event_at": _iso(cursor.last_event_at),
            "events_applied": cursor.events_applied,
            "backfill_required": cursor.backfill_required,
            "backfill_progress": cursor.backfill_progress,
            "last_error": cursor.last_error,
            "updated_at": _iso(cursor.updated_at),
        },
        "primary": primary,
        "lag": {"events": pending, "seconds": round(lag_seconds, 3)},
        "last_errors": errors[:LAST_ERRORS],
        # Failed items waiting for the primary or the mirror's storage to come back.
        "waiting_for": blocked,
    }
