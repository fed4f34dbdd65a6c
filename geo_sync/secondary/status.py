"""What `geo-sync status` reports for a secondary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from geo_sync.db import utcnow
from geo_sync.errors import AuthError
from geo_sync.secondary import heartbeat
from geo_sync.secondary.client import PrimaryClient
from geo_sync.secondary.leader import CURSOR_LEASE
from geo_sync.tracking import epoch_row, lag, selection_row, states, sync_rows
from geo_sync.tracking.models import CursorRow, Lease
from geo_sync.tracking.states import SyncState
from replicators.type_names import registry_tables

LAST_ERRORS = 10


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _age(value: datetime | None) -> float | None:
    return round((utcnow() - value).total_seconds(), 1) if value else None


def secondary_status(engine: Engine, client: PrimaryClient | None, name: str,
                     worker_stale_seconds: float = 60.0,
                     lag_window_seconds: float = 3600.0) -> dict[str, Any]:
    """Counts per type (of the selected items: the registries hold no others), the
    selection, cursor position and lag, per-item lag, workers, the recent errors."""
    tables = registry_tables()  # names and tables only: no replicator class (type_names)
    with engine.connect() as conn:
        types = {name: sync_rows.counts(conn, table) for name, table in tables.items()}
        selection = selection_row.applied(conn)
        followed = epoch_row.read(conn)
        item_lag = {name: lag.summary(conn, table, lag_window_seconds, utcnow()).to_json()
                    for name, table in tables.items()}
        cursor = conn.execute(select(CursorRow).where(CursorRow.id == 1)).one()
        lease = conn.execute(select(Lease.holder, Lease.lease_until)
                             .where(Lease.name == CURSOR_LEASE)).one()
        now = utcnow()
        workers = [{"worker": w.worker_id, "kind": w.kind, "pid": w.pid,
                    "host": w.hostname, "beat_age_seconds": _age(w.beat_at),
                    "alive": (now - w.beat_at).total_seconds() < worker_stale_seconds,
                    "items_done": w.items_done, "last_item_at": _iso(w.last_item_at)}
                   for w in heartbeat.all_workers(conn)]
        blocked: dict[str, int] = {}
        for table in tables.values():
            for blocker, count in sync_rows.blocked_counts(conn, table).items():
                blocked[blocker] = blocked.get(blocker, 0) + count
        errors = []
        for type_name, model in tables.items():
            rows = conn.execute(
                select(model.record_id, model.path, model.last_error, model.updated_at,
                       model.retry_at, model.missing_on_primary)
                .where(model.last_error.is_not(None),  # ix_<registry>_errors
                       model.state != states.constant(SyncState.SYNCED))
                .order_by(model.updated_at.desc()).limit(LAST_ERRORS)
            ).all()
            errors += [{"type": type_name, "record_id": r.record_id, "path": r.path,
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
            site = report.get("site") or {}
            primary = {"queried": True, "reachable": True,
                       "epoch": site.get("epoch"), "maintenance": site.get("maintenance"),
                       "maintenance_reason": site.get("maintenance_reason"),
                       "demoted": site.get("demoted"),
                       "new_primary_url": site.get("new_primary_url"),
                       "last_event_id": report["last_event_id"],
                       "last_event_at": report.get("last_event_at"),
                       "pending_events": mine.get("pending_events"),
                       "backfill_required": mine.get("backfill_required")}
        except AuthError as exc:
            # It answered: reachable, but it refuses us; not the same fix as a network fault.
            primary = {"queried": True, "reachable": True, "refused": True, "error": str(exc)}
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
        # Fencing: the highest primary epoch followed (a lower one is refused).
        "epoch": {"followed": followed.epoch, "primary_url": followed.primary_url,
                  "promoted_at": _iso(followed.promoted_at)},
        "lag": {"events": pending, "seconds": round(lag_seconds, 3)},
        # Per type: commit on the primary to verified copy here (geo_sync.tracking.lag).
        "item_lag": item_lag,
        "selection": {"selective": selection.selective, "rules": selection.describe(),
                      "include": {k: list(v) for k, v in selection.include.items()},
                      "exclude": {k: list(v) for k, v in selection.exclude.items()}},
        "events": {
            "last_seen_id": primary.get("last_event_id"),
            "last_seen_at": primary.get("last_event_at"),
            "last_seen_age_seconds": _age(datetime.fromisoformat(primary["last_event_at"]))
            if primary.get("last_event_at") else None,
            "last_processed_id": cursor.last_event_id,
            "last_processed_at": _iso(cursor.last_event_at),
            "last_processed_age_seconds": _age(cursor.last_event_at),
        },
        "cursor_holder": {
            "holder": lease.holder,
            "alive": bool(lease.holder and lease.lease_until and lease.lease_until > now),
            "lease_until": _iso(lease.lease_until),
        },
        "workers": workers,
        "last_errors": errors[:LAST_ERRORS],
        # Failed items waiting for the primary or the mirror's storage to come back.
        "waiting_for": blocked,
    }
