"""What the cursor and the backfill record under a selection: the changes of selected
items, and, for an item a rename moved out of the selection, a delete (from the
selection's point of view its selected path is gone, as on a delete event)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select

from geo_sync.selection import Selection
from geo_sync.tracking.event_rows import NetChange
from geo_sync.tracking.models import Registry


def to_record(conn: Connection, model: Registry, type_name: str, selection: Selection,
              changes: Sequence[NetChange]) -> list[NetChange]:
    """The changes to record: a pre-filter on the list given to ``note_changes``."""
    chosen = [c for c in changes if selection.selects(type_name, c.path)]
    if len(chosen) == len(changes):
        return chosen
    return chosen + moved_out(conn, model, [c for c in changes
                                            if not selection.selects(type_name, c.path)])


def moved_out(conn: Connection, model: Registry, unselected: Sequence[NetChange]
              ) -> list[NetChange]:
    """Deletes for the held items among ``unselected`` (changes to paths not selected):
    at the path held, so nothing outside the selection is touched."""
    held = {record_id: path for record_id, path in conn.execute(
        select(model.record_id, model.path).where(
            model.record_id.in_([c.record_id for c in unselected]),
            model.tombstone.is_(False)))}
    return [NetChange(c.record_id, held[c.record_id], tombstone=True, size=None,
                      checksum=None, events=c.events, committed_at=c.committed_at)
            for c in unselected if c.record_id in held]
