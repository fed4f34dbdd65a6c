"""This site's epoch, maintenance mode and fencing (the ``geo_site`` row, 0006).

While maintenance is on or the site is demoted, nothing is published: PostgreSQL's
trigger refuses every insert into the event log, and ``check_writable`` does the same
for the portable path. The push hooks read a marker file instead of the database
(``READ_ONLY_MARKER`` under the storage root), written here together with the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, update

from geo_sync.db import utcnow
from geo_sync.errors import InvalidInput, SiteReadOnly
from geo_sync.files import write_atomically
from geo_sync.primary.models import SiteRow

#: SQLSTATEs of the trigger (0006): maintenance on, site demoted.
MAINTENANCE_SQLSTATE = "55G01"
DEMOTED_SQLSTATE = "55G02"
#: Under the storage root: present while pushes must be refused (its text says why).
READ_ONLY_MARKER = ".geo-sync-read-only"
MAX_REASON = 500


@dataclass(frozen=True)
class SiteState:
    """What ``geo_site`` says now."""

    epoch: int
    maintenance: bool
    maintenance_reason: str | None
    maintenance_since: datetime | None
    demoted: bool
    new_primary_url: str | None

    @property
    def writable(self) -> bool:
        return not (self.maintenance or self.demoted)

    def refusal(self) -> SiteReadOnly | None:
        """The error a write gets now, or None if writes are allowed."""
        if self.demoted:
            return SiteReadOnly(
                f"this site (epoch {self.epoch}) was demoted; the primary is now "
                f"{self.new_primary_url or 'another site'}",
                hint="publish and push on the new primary; `geo-sync primary rejoin` makes "
                "this site a secondary of it")
        if self.maintenance:
            return SiteReadOnly(
                f"the primary is in maintenance mode "
                f"({self.maintenance_reason or 'no reason given'})",
                hint="wait until it ends, or run `geo-sync primary maintenance off`")
        return None

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "maintenance": self.maintenance,
                "maintenance_reason": self.maintenance_reason,
                "maintenance_since": (self.maintenance_since.isoformat()
                                      if self.maintenance_since else None),
                "demoted": self.demoted, "new_primary_url": self.new_primary_url}


def read_state(conn: Connection) -> SiteState:
    row = conn.execute(select(SiteRow.__table__).where(SiteRow.id == 1)).first()
    if row is None:  # a database migrated by hand without 0006's row
        return SiteState(1, False, None, None, False, None)
    return SiteState(int(row.epoch), bool(row.maintenance), row.maintenance_reason,
                     row.maintenance_since, bool(row.demoted), row.new_primary_url)


def check_writable(conn: Connection, *, accepted_push: bool = False) -> None:
    """Raise SiteReadOnly when publishing is refused (the portable path's trigger). An
    ``accepted_push`` (already taken by the git server) passes maintenance mode."""
    state = read_state(conn)
    if accepted_push and not state.demoted:
        return
    refusal = state.refusal()
    if refusal is not None:
        raise refusal


def from_sqlstate(sqlstate: str | None, message: str) -> SiteReadOnly | None:
    """The trigger's refusal as the error the portable path raises."""
    if sqlstate not in (MAINTENANCE_SQLSTATE, DEMOTED_SQLSTATE):
        return None
    hint = ("wait until it ends, or run `geo-sync primary maintenance off`"
            if sqlstate == MAINTENANCE_SQLSTATE else
            "publish and push on the new primary; `geo-sync primary rejoin` makes this site "
            "a secondary of it")
    return SiteReadOnly(message.removeprefix("geo_publish: "), hint=hint)


def set_maintenance(conn: Connection, on: bool, reason: str | None = None) -> SiteState:
    """Turn maintenance mode on or off; returns the new state."""
    if reason is not None and len(reason) > MAX_REASON:
        raise InvalidInput(f"reason must be at most {MAX_REASON} characters")
    now = utcnow()
    values: dict[str, Any] = {"maintenance": on, "changed_at": now}
    if on:
        values["maintenance_reason"] = reason or None
        values["maintenance_since"] = now
    else:
        values["maintenance_reason"] = None
        values["maintenance_since"] = None
    conn.execute(update(SiteRow).where(SiteRow.id == 1).values(**values))
    return read_state(conn)


def demote(conn: Connection, new_primary_url: str | None) -> SiteState:
    """Fence this site: it takes no writes again until ``rejoin`` makes it a secondary.
    It keeps its own epoch, so a secondary that followed the promoted site's refuses it
    (split brain) as well as being told where the primary is now. A URL already known
    is kept when the caller knows none (a site fenced by a higher epoch)."""
    state = read_state(conn)
    conn.execute(update(SiteRow).where(SiteRow.id == 1).values(
        demoted=True, new_primary_url=new_primary_url or state.new_primary_url,
        changed_at=utcnow()))
    return read_state(conn)


def set_epoch(conn: Connection, epoch: int) -> None:
    """A promoted site starts at ``epoch`` (one above the site it replaced)."""
    conn.execute(update(SiteRow).where(SiteRow.id == 1).values(
        epoch=epoch, demoted=False, new_primary_url=None, maintenance=False,
        maintenance_reason=None, maintenance_since=None, changed_at=utcnow()))


def write_marker(storage_root: Path, state: SiteState) -> None:
    """Make the push hooks agree with ``state``: the marker exists exactly while writes
    are refused, and holds the sentence a refused push prints."""
    marker = storage_root / READ_ONLY_MARKER
    refusal = state.refusal()
    if refusal is None:
        marker.unlink(missing_ok=True)
        return
    write_atomically(marker, f"{refusal.message} (hint: {refusal.hint})\n", mode=0o644)
