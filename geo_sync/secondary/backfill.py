"""Backfill: make the registries cover everything in the primary's catalog.

Runs on a secondary's first start, after the primary pruned events it never
received, and after the selection changed (`secondary reselect`): rows of items no
longer selected are forgotten first (their copies stay for `orphans`), and newly
selected items are found in the catalog. The order makes it exact: first move our
feed cursor to the primary's head (so every later change arrives as an event), then
page through the catalog creating missing rows, making changed ones pending and
tombstoning rows of items that no longer exist.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, delete, select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.errors import InvalidInput
from geo_sync.logging import get_logger
from geo_sync.secondary import selective
from geo_sync.secondary.client import PrimaryClient
from geo_sync.secondary.runtime import Runtime
from geo_sync.selection import Selection
from geo_sync.tracking import event_rows, selection_row, sync_rows
from geo_sync.tracking.models import CursorRow, Registry
from geo_sync.wire import CatalogPage
from replicators.base import Copy
from replicators.type_map import copies

log = get_logger("backfill")
PAGE = 1000

Progress = Callable[[str, int, int], None]


def _apply_page(conn: Connection, replicator: type[Copy], page: CatalogPage,
                selection: Selection) -> list[str]:
    """Record the page's selected items; return the record ids of all of them (an
    unselected item still exists: its row, if any, is not a vanished item's)."""
    model = replicator.registry_table
    rows, ids, unselected = [], [], []
    for entry in page.entries():
        try:
            if isinstance(entry, InvalidInput):
                raise entry
            path = replicator.validate_path(entry.path)
        except InvalidInput as exc:
            log.error("backfill_skipped_unsafe_item", replicable=replicator.name,
                      record_id=getattr(entry, "record_id", None), error=exc.message)
            continue
        record_id, size, checksum = entry.record_id, entry.size, entry.checksum
        ids.append(record_id)
        if selection.selects(replicator.name, path):
            rows.append(sync_rows.new_row(record_id, path, size=size, checksum=checksum,
                                          committed_at=entry.updated_at))
        else:
            unselected.append(event_rows.NetChange(record_id, path, tombstone=False, size=size,
                                                  checksum=checksum,
                                                  committed_at=entry.updated_at))
    if unselected:  # renamed out of the selection while we were away: gone for us
        event_rows.note_changes(conn, model, selective.moved_out(conn, model, unselected))
    inserted = sync_rows.insert_ignore(conn, model, rows)
    if inserted < len(rows):  # some existed: resync those the catalog says changed
        existing = {
            row.record_id: row
            for row in conn.execute(
                select(model.record_id, model.path, model.expected_checksum, model.tombstone)
                .where(model.record_id.in_([row["record_id"] for row in rows]))
            )
        }
        changed = [
            event_rows.NetChange(row["record_id"], row["path"], tombstone=False,
                                 size=row["expected_size"], checksum=row["expected_checksum"],
                                 committed_at=row["change_committed_at"])
            for row in rows
            if (known := existing.get(row["record_id"])) is not None
            and (known.path != row["path"] or known.tombstone
                 or known.expected_checksum != row["expected_checksum"])
        ]
        event_rows.note_changes(conn, model, changed)
    return ids


def _tombstone_vanished(runtime: Runtime, model: Registry, seen: set[str],
                        started: datetime) -> int:
    with runtime.engine.connect() as conn:
        known = conn.execute(select(model.record_id, model.path).where(
            model.tombstone.is_(False), model.created_at < started)).all()
    vanished = [event_rows.NetChange(row.record_id, row.path, tombstone=True, size=None,
                                   checksum=None)
                for row in known if row.record_id not in seen]
    for start in range(0, len(vanished), PAGE):
        with write_transaction(runtime.engine) as conn:
            event_rows.note_changes(conn, model, vanished[start:start + PAGE])
    return len(vanished)


def _forget_unselected(runtime: Runtime, replicator: type[Copy],
                       selection: Selection) -> int:
    """Delete the rows of items the selection no longer takes. Only rows: their copies
    stay on disk, where `geo-sync orphans` lists them and `orphans --delete` (an
    operator's act) removes them. A pending delete (tombstone) is left to finish."""
    model = replicator.registry_table
    with runtime.engine.connect() as conn:
        rows = conn.execute(select(model.id, model.path).where(
            model.tombstone.is_(False))).all()
    unselected = [row.id for row in rows if not selection.selects(replicator.name, row.path)]
    for start in range(0, len(unselected), PAGE):
        with write_transaction(runtime.engine) as conn:
            conn.execute(delete(model).where(model.id.in_(unselected[start:start + PAGE])))
    return len(unselected)


def _set_progress(runtime: Runtime, text: str) -> None:
    with write_transaction(runtime.engine) as conn:
        conn.execute(update(CursorRow).where(CursorRow.id == 1)
                     .values(backfill_progress=text, updated_at=utcnow()))


def backfill(runtime: Runtime, client: PrimaryClient, progress: Progress | None = None) -> int:
    """Run a full backfill; return the number of catalog items seen."""
    started = utcnow()
    with runtime.engine.connect() as conn:
        applied = selection_row.applied_text(conn)
    selection = Selection.from_json(applied)
    head = client.head(reset=True)
    total_seen = 0
    for replicator in copies():
        forgotten = _forget_unselected(runtime, replicator, selection)
        if forgotten:
            log.info("unselected_items_forgotten", replicable=replicator.name, count=forgotten,
                     hint="their copies stay: `geo-sync orphans` lists them, "
                     "`geo-sync orphans --delete` removes them")
        after: int | None = 0
        seen: set[str] = set()
        total = 0  # as counted with the first page: progress only, not a bound
        while after is not None:
            page = client.catalog_page(replicator.name, after, PAGE, total=after == 0)
            with write_transaction(runtime.engine) as conn:
                seen.update(_apply_page(conn, replicator, page, selection))
            after = page.next_after
            total = max(len(seen), page.total if page.total is not None else total)
            text = f"{replicator.name}: {len(seen)}/{total}"
            _set_progress(runtime, text)
            log.info("backfill_progress", replicable=replicator.name, done=len(seen),
                     total=total)
            if progress:
                progress(replicator.name, len(seen), total)
        vanished = _tombstone_vanished(runtime, replicator.registry_table, seen, started)
        if vanished:
            log.info("backfill_tombstoned_vanished", replicable=replicator.name, count=vanished)
        total_seen += len(seen)
    with write_transaction(runtime.engine) as conn:
        # Done only if the selection is still the one followed: after a `reselect`
        # meanwhile, backfill_required stays set and the next pass starts over.
        done = conn.execute(update(CursorRow).where(
            CursorRow.id == 1, CursorRow.selection.is_not_distinct_from(applied)).values(
            cursor=head, backfill_required=False, backfill_progress=f"done: {total_seen} items",
            last_error=None, updated_at=utcnow())).rowcount
    if not done:
        log.info("selection_changed_during_backfill", hint="backfilling again")
    return total_seen
