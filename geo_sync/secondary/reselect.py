"""Changing a running secondary's selection (`geo-sync secondary reselect`, and `secondary
run` at start with the config's selection).

The change is one tracking-DB write: the new selection and "backfill required". The
running cursor sees it on its next pass (a page filtered by the old selection fails its
compare-and-set and is read again) and backfills: rows of items no longer selected are
forgotten (their copies stay until `geo-sync orphans --delete`), newly selected items
are taken from the primary's catalog. Nothing on disk is touched here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.logging import get_logger
from geo_sync.selection import Selection
from geo_sync.tracking import selection_row
from geo_sync.tracking.models import CursorRow
from replicators.type_map import REPLICATORS

log = get_logger("reselect")


@dataclass(frozen=True)
class Reselection:
    """What applying a selection does: whether it differs, and per type how many held
    items it leaves out (the rest are found in the catalog by the backfill)."""

    changed: bool
    before: Selection
    after: Selection
    leaving: dict[str, int]


def plan(engine: Engine, selection: Selection) -> Reselection:
    """Compare ``selection`` with the applied one; change nothing."""
    with engine.connect() as conn:
        before = selection_row.applied(conn)
        leaving = {}
        for replicator in REPLICATORS.values():
            model = replicator.registry_table
            paths = conn.execute(select(model.path).where(model.tombstone.is_(False))
                                 ).scalars()
            leaving[replicator.name] = sum(
                1 for path in paths if not selection.selects(replicator.name, path))
    return Reselection(before.to_json() != selection.to_json(), before, selection, leaving)


def apply(engine: Engine, selection: Selection) -> bool:
    """Make ``selection`` the applied one and ask the cursor to backfill; return whether
    it changed anything."""
    text = selection.to_json()
    with write_transaction(engine) as conn:
        changed = conn.execute(update(CursorRow).where(
            CursorRow.id == 1, CursorRow.selection.is_distinct_from(text)).values(
            selection=text, backfill_required=True, backfill_progress="selection changed",
            updated_at=utcnow())).rowcount
    if changed:
        log.info("selection_changed", rules=selection.describe() or ["every item"])
    return bool(changed)
