"""This site's epoch, maintenance mode and fencing (the ``geo_site`` row, 0006).

While maintenance is on, the site is demoted or its epoch is unconfirmed, nothing is
published: PostgreSQL's trigger refuses every insert into the event log, and
``check_writable`` does the same for the portable path. The push hooks read a marker
file instead of the database (``READ_ONLY_MARKER`` under the storage root), written
here together with the row.

**Unclean shutdown** (0008). `primary serve` sets ``serving_since`` when it starts and
clears it when it stops cleanly. Found set at start, the site may have been down while
another was promoted (`promote --force`): it must not take writes before it knows.
Every enabled secondary that was following it before the crash (seen within
``EPOCH_CONFIRM_WINDOW_SECONDS`` of the last one seen) is marked ``epoch_unconfirmed``,
and publishing is refused until each of them has reached the site at its own epoch
(they did not follow a newer primary; a promoted secondary no longer polls, so the
site waits) or an operator confirms (`primary maintenance off`). A higher epoch
fences the site as before. With no such secondary there is nothing to wait for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select, update

from geo_sync.db import utcnow
from geo_sync.errors import InvalidInput, SiteReadOnly
from geo_sync.files import write_atomically
from geo_sync.primary.models import Secondary, SiteRow

#: SQLSTATEs of the trigger (0006): maintenance on, site demoted.
MAINTENANCE_SQLSTATE = "55G01"
DEMOTED_SQLSTATE = "55G02"
#: ... and the epoch not confirmed after an unclean shutdown (0008).
UNCONFIRMED_SQLSTATE = "55G03"
#: Secondaries seen within this of the last one seen before an unclean shutdown were
#: following the site then: each must confirm its epoch.
EPOCH_CONFIRM_WINDOW_SECONDS = 600.0
UNCONFIRMED_REASON = "unclean shutdown: waiting for epoch confirmation"
UNCONFIRMED_HINT = ("writes resume by themselves once those secondaries reach this site "
                    "at its epoch (nobody was promoted); if you know no other site was "
                    "promoted, `geo-sync primary maintenance off` confirms; if one was, "
                    "`geo-sync primary demote --new-primary URL`")
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
    #: Secondaries whose confirmation of the epoch writes wait for (empty: none).
    awaiting_confirmation: tuple[str, ...] = ()
    unconfirmed_since: datetime | None = None

    @property
    def writable(self) -> bool:
        return not (self.maintenance or self.demoted or self.awaiting_confirmation)

    def unconfirmed_message(self) -> str:
        return (f"{UNCONFIRMED_REASON} (epoch {self.epoch}, from secondary "
                f"{', '.join(self.awaiting_confirmation)})")

    def refusal(self) -> SiteReadOnly | None:
        """The error a write gets now, or None if writes are allowed."""
        if self.demoted:
            return SiteReadOnly(
                f"this site (epoch {self.epoch}) was demoted; the primary is now "
                f"{self.new_primary_url or 'another site'}",
                hint="publish and push on the new primary; `geo-sync primary rejoin` makes "
                "this site a secondary of it")
        if self.awaiting_confirmation:
            return SiteReadOnly(self.unconfirmed_message(), hint=UNCONFIRMED_HINT)
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
                "demoted": self.demoted, "new_primary_url": self.new_primary_url,
                "awaiting_confirmation": list(self.awaiting_confirmation),
                "unconfirmed_since": (self.unconfirmed_since.isoformat()
                                      if self.unconfirmed_since else None)}


def read_state(conn: Connection) -> SiteState:
    row = conn.execute(select(SiteRow.__table__).where(SiteRow.id == 1)).first()
    if row is None:  # a database migrated by hand without 0006's row
        return SiteState(1, False, None, None, False, None)
    waiting: tuple[str, ...] = ()
    if row.unconfirmed_since is not None:
        waiting = tuple(conn.execute(
            select(Secondary.name).where(Secondary.epoch_unconfirmed, Secondary.enabled)
            .order_by(Secondary.name)).scalars())
    return SiteState(int(row.epoch), bool(row.maintenance), row.maintenance_reason,
                     row.maintenance_since, bool(row.demoted), row.new_primary_url,
                     waiting, row.unconfirmed_since if waiting else None)


def check_writable(conn: Connection, *, accepted_push: bool = False) -> None:
    """Raise SiteReadOnly when publishing is refused (the portable path's trigger). An
    ``accepted_push`` (already taken by the git server) passes maintenance mode."""
    state = read_state(conn)
    if accepted_push and not (state.demoted or state.awaiting_confirmation):
        return
    refusal = state.refusal()
    if refusal is not None:
        raise refusal


def from_sqlstate(sqlstate: str | None, message: str) -> SiteReadOnly | None:
    """The trigger's refusal as the error the portable path raises."""
    if sqlstate not in (MAINTENANCE_SQLSTATE, DEMOTED_SQLSTATE, UNCONFIRMED_SQLSTATE):
        return None
    if sqlstate == UNCONFIRMED_SQLSTATE:
        return SiteReadOnly(message.removeprefix("geo_publish: "), hint=UNCONFIRMED_HINT)
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
        unconfirmed_since=None, changed_at=utcnow()))
    conn.execute(update(Secondary).values(epoch_unconfirmed=False))
    return read_state(conn)


def set_epoch(conn: Connection, epoch: int) -> None:
    """A promoted site starts at ``epoch`` (one above the site it replaced)."""
    conn.execute(update(SiteRow).where(SiteRow.id == 1).values(
        epoch=epoch, demoted=False, new_primary_url=None, maintenance=False,
        maintenance_reason=None, maintenance_since=None, unconfirmed_since=None,
        changed_at=utcnow()))


def begin_serving(conn: Connection,
                  window: float = EPOCH_CONFIRM_WINDOW_SECONDS) -> tuple[bool, SiteState]:
    """`primary serve` starts: note it, and if the last one did not stop cleanly make
    writes wait for the epoch's confirmation (see the module's docstring). Returns
    whether the last shutdown was unclean, and the state now."""
    row = conn.execute(select(SiteRow.serving_since, SiteRow.demoted)
                       .where(SiteRow.id == 1).with_for_update()).first()
    if row is None:
        return False, read_state(conn)
    now = utcnow()
    unclean = row.serving_since is not None
    if unclean and not row.demoted:
        last = conn.execute(select(func.max(Secondary.last_seen_at))
                            .where(Secondary.enabled)).scalar()
        if last is not None:
            following = conn.execute(update(Secondary).where(
                Secondary.enabled, Secondary.last_seen_at >= last - timedelta(seconds=window)
            ).values(epoch_unconfirmed=True)).rowcount
            if following:
                conn.execute(update(SiteRow).where(
                    SiteRow.id == 1, SiteRow.unconfirmed_since.is_(None)).values(
                    unconfirmed_since=now, changed_at=now))
    conn.execute(update(SiteRow).where(SiteRow.id == 1).values(serving_since=now))
    return unclean, read_state(conn)


def end_serving(conn: Connection) -> None:
    """`primary serve` stopped cleanly: the next start is not an unclean one."""
    conn.execute(update(SiteRow).where(SiteRow.id == 1).values(serving_since=None))


def confirm_epoch(conn: Connection, caller: str | None) -> SiteState:
    """Secondary ``caller`` reached this site at its own epoch (None: the operator
    confirms for all). Writes resume once nobody is left to confirm."""
    pending = update(Secondary).where(Secondary.epoch_unconfirmed)
    if caller is not None:
        pending = pending.where(Secondary.name == caller)
    conn.execute(pending.values(epoch_unconfirmed=False))
    state = read_state(conn)
    if not state.awaiting_confirmation:
        conn.execute(update(SiteRow).where(SiteRow.id == 1, SiteRow.unconfirmed_since
                                           .is_not(None)).values(unconfirmed_since=None,
                                                                 changed_at=utcnow()))
    return state


def write_marker(storage_root: Path, state: SiteState) -> None:
    """Make the push hooks agree with ``state``: the marker exists exactly while writes
    are refused, and holds the sentence a refused push prints."""
    marker = storage_root / READ_ONLY_MARKER
    refusal = state.refusal()
    if refusal is None:
        marker.unlink(missing_ok=True)
        return
    write_atomically(marker, f"{refusal.message} (hint: {refusal.hint})\n", mode=0o644)
