"""Registered secondaries: credentials, acknowledged cursors, health."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, or_, select, update

from geo_sync.auth import Credential, new_secret
from geo_sync.db import utcnow
from geo_sync.errors import InvalidCursor, InvalidInput, NotFound
from geo_sync.primary.feed import feed_for
from geo_sync.primary.models import Event, Secondary
from geo_sync.settings import MIN_SECRET_BYTES

_SEEN_RESOLUTION = timedelta(seconds=5)
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class SecondaryStatus:
    """How a secondary looks from the primary."""

    name: str
    enabled: bool
    # Healthy: enabled, connected at least once, seen within retention, no backfill due.
    healthy: bool
    # Holds pruning back: a new secondary does so from registration, before it connects.
    holds_pruning: bool
    backfill_required: bool
    acked_at: datetime | None
    last_seen_at: datetime | None
    pending_events: int

    @property
    def state(self) -> str:
        """One word for an operator: why it is (not) healthy."""
        if not self.enabled:
            return "disabled"
        if self.backfill_required:
            return "must_backfill"
        if self.last_seen_at is None:
            return "never_connected"
        return "connected" if self.healthy else "silent"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "enabled": self.enabled,
            "healthy": self.healthy,
            "state": self.state,
            "holds_pruning": self.holds_pruning,
            "backfill_required": self.backfill_required,
            "acked_at": self.acked_at.isoformat() if self.acked_at else None,
            "last_seen_at": self.last_seen_at.isoformat() if self.last_seen_at else None,
            "pending_events": self.pending_events,
        }


def add_secondary(conn: Connection, name: str, secret: str | None = None) -> str:
    """Register ``name`` with its cursor at the log's head; return its (new) secret."""
    # ASCII only: isalnum() alone also takes every script's letters and digits.
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"secondary name {name[:80]!r} must be 1-64 ASCII letters, digits, '-' or '_'"
        )
    if conn.execute(select(Secondary.id).where(Secondary.name == name)).first():
        raise InvalidInput(
            f"secondary {name!r} is already registered",
            hint="pick another name, or `geo-sync primary remove-secondary` the old one",
        )
    if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
        raise InvalidInput(f"a secondary's secret must be at least {MIN_SECRET_BYTES} "
                           "bytes", hint="omit it and geo-sync generates one")
    secret = secret or new_secret()
    now = utcnow()
    conn.execute(
        insert(Secondary).values(
            name=name,
            secret=secret,
            enabled=True,
            acked_cursor=feed_for(conn.dialect).head(conn),
            acked_at=now,
            backfill_required=False,
            created_at=now,
        )
    )
    return secret


def set_enabled(conn: Connection, name: str, enabled: bool) -> None:
    """Enable or disable a secondary; a disabled one is refused by the API at once."""
    result = conn.execute(update(Secondary).where(Secondary.name == name).values(enabled=enabled))
    if result.rowcount == 0:
        raise NotFound(f"no secondary named {name!r}", hint="list them with `geo-sync status`")


def remove_secondary(conn: Connection, name: str) -> None:
    """Forget a secondary: its credential, and its hold on pruning. Its mirror is left
    as it is; its old cursor means nothing once events it missed are pruned, so it
    comes back with a fresh tracking database (which backfills)."""
    result = conn.execute(delete(Secondary).where(Secondary.name == name))
    if result.rowcount == 0:
        raise NotFound(f"no secondary named {name!r}", hint="list them with `geo-sync status`")


def credential(conn: Connection, name: str) -> Credential | None:
    """The credential of ``name``, or None if unknown."""
    row = conn.execute(
        select(Secondary.secret, Secondary.enabled).where(Secondary.name == name)
    ).first()
    return Credential(name, row.secret, row.enabled) if row else None


def touch(conn: Connection, name: str) -> None:
    """Record that ``name`` was seen now (at most one write every few seconds)."""
    now = utcnow()
    conn.execute(
        update(Secondary)
        .where(Secondary.name == name)
        .where(or_(Secondary.last_seen_at.is_(None),
                   Secondary.last_seen_at < now - _SEEN_RESOLUTION))
        .values(last_seen_at=now)
    )


def acknowledge(conn: Connection, name: str, cursor: str) -> None:
    """Store the cursor ``name`` has durably applied; events before it may be pruned.

    Only a position the primary has handed out: a cursor beyond the head would let
    pruning delete events nobody has read."""
    feed = feed_for(conn.dialect)
    feed.validate(cursor)
    if feed.beyond(cursor, feed.head(conn)):
        # SQLite reuses the ids of pruned events, so its head can fall back to a
        # position the caller already acknowledged: that one stays acceptable.
        held = conn.execute(select(Secondary.acked_cursor)
                            .where(Secondary.name == name)).scalar()
        if not held or _unreadable(feed, held) or feed.beyond(cursor, held):
            raise InvalidCursor("cursor is beyond the feed's head: acknowledge only a "
                                "cursor GET /events returned")
    now = utcnow()
    conn.execute(
        update(Secondary)
        .where(Secondary.name == name)
        .values(acked_cursor=cursor, acked_at=now, last_seen_at=now)
    )


def _unreadable(feed: Any, cursor: str) -> bool:
    try:
        feed.validate(cursor)
    except InvalidCursor:
        return True
    return False


#: Built once: asked on every events read.
_BACKFILL_REQUIRED = select(Secondary.backfill_required).where(
    Secondary.name == bindparam("name"))


def is_backfill_required(conn: Connection, name: str) -> bool:
    return bool(conn.execute(_BACKFILL_REQUIRED, {"name": name}).scalar())


def restart_at_head(conn: Connection, name: str) -> str:
    """The secondary is about to backfill: clear its flag and move its cursor to the head."""
    head = feed_for(conn.dialect).head(conn)
    conn.execute(
        update(Secondary)
        .where(Secondary.name == name)
        .values(backfill_required=False, acked_cursor=head, acked_at=utcnow())
    )
    return head


def healthy_since(retention_seconds: int, now: datetime | None = None) -> datetime:
    """Secondaries seen after this moment still hold back pruning."""
    return (now or utcnow()) - timedelta(seconds=retention_seconds)


def statuses(conn: Connection, retention_seconds: int) -> list[SecondaryStatus]:
    """Every registered secondary with its health and how many events it has not acked."""
    feed = feed_for(conn.dialect)
    cutoff = healthy_since(retention_seconds)
    result = []
    for row in conn.execute(select(Secondary.__table__).order_by(Secondary.name)):
        seen = row.last_seen_at or row.created_at
        holds_pruning = row.enabled and seen >= cutoff and not row.backfill_required
        pending = 0
        if row.acked_cursor:
            pending = conn.execute(
                select(func.count()).select_from(Event).where(~feed.delivered(row.acked_cursor))
            ).scalar_one()
        result.append(
            SecondaryStatus(
                name=row.name,
                enabled=row.enabled,
                healthy=holds_pruning and row.last_seen_at is not None,
                holds_pruning=holds_pruning,
                backfill_required=row.backfill_required,
                acked_at=row.acked_at,
                last_seen_at=row.last_seen_at,
                pending_events=pending,
            )
        )
    return result
