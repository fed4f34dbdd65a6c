"""What this secondary would lose if its primary vanished now (recovery point), and
what stands between it and a promotion."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, not_, or_, select

from geo_sync.db import utcnow
from geo_sync.errors import GeoSyncError
from geo_sync.secondary.client import PrimaryClient
from geo_sync.tracking import selection_row
from geo_sync.tracking.models import CursorRow, Registry
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.type_map import REPLICATORS

#: Events counted behind the cursor at most (pages of the feed read to count them).
MAX_EVENT_PAGES = 20
#: Items listed by name in a report (all are counted).
MAX_LISTED = 200
_VERIFIED = (VerificationState.SUCCEEDED.value, VerificationState.DISABLED.value)


def verified(model: Registry) -> Any:
    """A synced copy checked against the primary's checksum, or one with none to check
    against (a live job log: its bytes are all here, its checksum comes when archived)."""
    return or_(model.verification_state.in_(_VERIFIED), model.expected_checksum.is_(None))


def not_done(model: Registry) -> Any:
    """A row whose copy is not both synced and verified (a pending delete included)."""
    return or_(model.state != SyncState.SYNCED.value, not_(verified(model)),
               model.tombstone.is_(True))


@dataclass
class TypeGap:
    """One type's items not synced and verified: counts, bytes, the oldest change."""

    pending: int = 0
    failed: int = 0
    unverified: int = 0
    deletes: int = 0
    bytes: int = 0
    oldest: datetime | None = None

    @property
    def items(self) -> int:
        return self.pending + self.failed + self.unverified + self.deletes

    def to_json(self) -> dict[str, Any]:
        return {"pending": self.pending, "failed": self.failed, "unverified": self.unverified,
                "deletes_not_applied": self.deletes, "bytes": self.bytes,
                "oldest_change_at": self.oldest.isoformat() if self.oldest else None}


@dataclass
class Rpo:
    """The recovery point now: events not applied, items not done, what they are."""

    primary_reachable: bool
    events_behind: int | None
    events_behind_capped: bool
    last_event_id: int | None
    last_event_at: datetime | None
    types: dict[str, TypeGap]
    lost: list[dict[str, Any]] = field(default_factory=list)
    primary_error: str | None = None

    @property
    def items(self) -> int:
        return sum(gap.items for gap in self.types.values())

    @property
    def bytes(self) -> int:
        return sum(gap.bytes for gap in self.types.values())

    @property
    def zero(self) -> bool:
        """Nothing would be lost: every event applied, every item synced and verified."""
        return self.primary_reachable and self.events_behind == 0 and self.items == 0

    @property
    def oldest(self) -> datetime | None:
        times = [gap.oldest for gap in self.types.values() if gap.oldest is not None]
        return min(times) if times else None

    def to_json(self) -> dict[str, Any]:
        oldest = self.oldest
        return {
            "zero": self.zero,
            "primary_reachable": self.primary_reachable,
            "primary_error": self.primary_error,
            "events_not_applied": self.events_behind,
            "events_not_applied_at_least": self.events_behind_capped,
            "last_event_applied": {"id": self.last_event_id,
                                   "at": self.last_event_at.isoformat()
                                   if self.last_event_at else None},
            "items": self.items, "bytes": self.bytes,
            "oldest_change_at": oldest.isoformat() if oldest else None,
            "oldest_change_age_seconds": round((utcnow() - oldest).total_seconds(), 3)
            if oldest else None,
            "types": {name: gap.to_json() for name, gap in self.types.items()},
            "items_listed": self.lost,
        }


def events_behind(engine: Engine, client: PrimaryClient | None
                  ) -> tuple[int | None, bool, str | None]:
    """How many events the primary has after our cursor (None if it cannot tell), whether
    the count stopped at its cap, and the primary's error if it did not answer."""
    with engine.connect() as conn:
        cursor = conn.execute(select(CursorRow.cursor, CursorRow.backfill_required)
                              .where(CursorRow.id == 1)).one()
    if client is None:
        return None, False, "primary not asked"
    if cursor.cursor is None or cursor.backfill_required:
        return None, False, "this secondary must backfill first"
    position, count = cursor.cursor, 0
    try:
        for _ in range(MAX_EVENT_PAGES):
            page = client.events(position, limit=1000, wait=0)
            count += len(page.events)
            position = page.cursor
            if not page.more and not page.events:
                return count, False, None
            if not page.events:
                return count, False, None
        return count, True, None
    except GeoSyncError as exc:
        return None, False, str(exc)


def measure(engine: Engine, client: PrimaryClient | None, *, listed: int = MAX_LISTED) -> Rpo:
    """The recovery point now (asks the primary for the events behind, if given one)."""
    behind, capped, error = events_behind(engine, client)
    types: dict[str, TypeGap] = {}
    lost: list[dict[str, Any]] = []
    with engine.connect() as conn:
        cursor = conn.execute(select(CursorRow.last_event_id, CursorRow.last_event_at)
                              .where(CursorRow.id == 1)).one()
        for replicator in REPLICATORS.values():
            model = replicator.registry_table
            gap = TypeGap()
            synced = model.state == SyncState.SYNCED.value
            row = conn.execute(select(
                func.count().filter(model.tombstone.is_(False),
                                    model.state.in_([SyncState.PENDING.value,
                                                     SyncState.STARTED.value])),
                func.count().filter(model.tombstone.is_(False),
                                    model.state == SyncState.FAILED.value),
                func.count().filter(model.tombstone.is_(False), synced,
                                    not_(verified(model))),
                func.count().filter(model.tombstone.is_(True)),
                func.coalesce(func.sum(model.expected_size).filter(
                    model.tombstone.is_(False), not_done(model)), 0),
                func.min(model.change_committed_at).filter(not_done(model)),
            )).one()
            gap.pending, gap.failed, gap.unverified, gap.deletes = (
                int(row[0]), int(row[1]), int(row[2]), int(row[3]))
            gap.bytes, gap.oldest = int(row[4] or 0), row[5]
            types[replicator.name] = gap
            if len(lost) < listed:
                for item in conn.execute(select(
                        model.record_id, model.path, model.state, model.verification_state,
                        model.tombstone, model.expected_size, model.last_error)
                        .where(not_done(model)).order_by(model.id)
                        .limit(listed - len(lost))):
                    lost.append({"type": replicator.name, "record_id": item.record_id,
                                 "path": item.path,
                                 "state": "delete not applied" if item.tombstone
                                 else item.state if item.state != SyncState.SYNCED.value
                                 else "unverified",
                                 "bytes": item.expected_size, "error": item.last_error})
    return Rpo(primary_reachable=error is None, events_behind=behind,
               events_behind_capped=capped, last_event_id=cursor.last_event_id,
               last_event_at=cursor.last_event_at, types=types, lost=lost,
               primary_error=error)


def blockers(engine: Engine, config_dir: Path, *, rpo: Rpo) -> list[str]:
    """Why this site cannot take over now with nothing lost (empty: it can)."""
    found: list[str] = []
    with engine.connect() as conn:
        if selection_row.applied(conn).selective:
            found.append("selective sync is configured: this site holds only part of the "
                         "data and a partial copy cannot become the primary")
    if not rpo.primary_reachable:
        found.append(f"the primary does not answer ({rpo.primary_error}): the events "
                     "behind cannot be known")
    elif rpo.events_behind:
        found.append(f"{rpo.events_behind}{'+' if rpo.events_behind_capped else ''} event(s) "
                     "published but not applied here")
    if rpo.items:
        found.append(f"{rpo.items} item(s) not synced and verified ({rpo.bytes} bytes)")
    if not os.access(config_dir, os.W_OK):
        found.append(f"{config_dir} is not writable: the primary's config cannot be written")
    return found
