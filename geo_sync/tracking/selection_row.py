"""The selection the registries follow, kept in the cursor row: the cursor and the
backfill filter by it, `status` reports it, `secondary reselect` changes it."""

from __future__ import annotations

from sqlalchemy import Connection, select

from geo_sync.selection import Selection
from geo_sync.tracking.models import CursorRow


def applied_text(conn: Connection) -> str | None:
    """The applied selection as stored (None: every item)."""
    return conn.execute(select(CursorRow.selection).where(CursorRow.id == 1)).scalar()


def applied(conn: Connection) -> Selection:
    """The selection the registries follow now; ask it whether an item is held."""
    return Selection.from_json(applied_text(conn))
