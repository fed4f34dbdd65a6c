"""Backfill: make the registries cover everything in the primary's catalog.

Runs on a secondary's first start and after the primary pruned events it never
received. The order makes it exact: first move our feed cursor to the primary's
head (so every later change arrives as an event), then page through the
catalog creating missing rows, making changed ones pending and tombstoning rows
of items that no longer exist.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.errors import InvalidInput
from geo_sync.logging import get_logger
from geo_sync.secondary.client import PrimaryClient
from geo_sync.secondary.runtime import Runtime
from geo_sync.tracking import sync_rows
from geo_sync.tracking.models import CursorRow, Registry
from geo_sync.wire import CatalogPage
from replicators.base import Replicator
from replicators.registry import REPLICATORS

log = get_logger("backfill")
PAGE = 1000

Progress = Callable[[str, int, int], None]


def _apply_page(conn: Connection, replicator: type[Replicator], page: CatalogPage
                ) -> list[str]:
    model = replicator.registry
    rows, ids = [], []
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
        rows.append(sync_rows.new_row(record_id, path, size=size, checksum=checksum))
        ids.append(record_id)
    inserted = sync_rows.insert_ignore(conn, model, rows)
    if inserted < len(rows):  # some existed: resync those the catalog says changed
        existing = {
            row.record_id: row
            for row in conn.execute(
                select(model.record_id, model.path, model.expected_checksum, model.tombstone)
                .where(model.record_id.in_(ids))
            )
        }
        changed = [
            sync_rows.NetChange(row["record_id"], row["path"], tombstone=False,
                               size=row["expected_size"], checksum=row["expected_checksum"])
            for row in rows
            if (known := existing.get(row["record_id"])) is not None
            and (known.path != row["path"] or known.tombstone
                 or known.expected_checksum != row["expected_checksum"])
        ]
        sync_rows.note_changes(conn, model, changed)
    return ids


def _tombstone_vanished(runtime: Runtime, model: Registry, seen: set[str],
                        started: datetime) -> int:
    with runtime.engine.connect() as conn:
        known = conn.execute(select(model.record_id, model.path).where(
            model.tombstone.is_(False), model.created_at < started)).all()
    vanished = [sync_rows.NetChange(row.record_id, row.path, tombstone=True, size=None,
                                   checksum=None)
                for row in known if row.record_id not in seen]
    for start in range(0, len(vanished), PAGE):
        with write_transaction(runtime.engine) as conn:
            sync_rows.note_changes(conn, model, vanished[start:start + PAGE])
    return len(vanished)


def _set_progress(runtime: Runtime, text: str) -> None:
    with write_transaction(runtime.engine) as conn:
        conn.execute(update(CursorRow).where(CursorRow.id == 1)
                     .values(backfill_progress=text, updated_at=utcnow()))


def backfill(runtime: Runtime, client: PrimaryClient, progress: Progress | None = None) -> int:
    """Run a full backfill; return the number of catalog items seen."""
    started = utcnow()
    head = client.head(reset=True)
    total_seen = 0
    for replicator in REPLICATORS.values():
        after: int | None = 0
        seen: set[str] = set()
        while after is not None:
            page = client.catalog_page(replicator.name, after, PAGE)
            with write_transaction(runtime.engine) as conn:
                seen.update(_apply_page(conn, replicator, page))
            after = page.next_after
            text = f"{replicator.name}: {len(seen)}/{page.total}"
            _set_progress(runtime, text)
            log.info("backfill_progress", replicable=replicator.name, done=len(seen),
                     total=page.total)
            if progress:
                progress(replicator.name, len(seen), page.total)
        vanished = _tombstone_vanished(runtime, replicator.registry, seen, started)
        if vanished:
            log.info("backfill_tombstoned_vanished", replicable=replicator.name, count=vanished)
        total_seen += len(seen)
    with write_transaction(runtime.engine) as conn:
        conn.execute(update(CursorRow).where(CursorRow.id == 1).values(
            cursor=head, backfill_required=False, backfill_progress=f"done: {total_seen} items",
            last_error=None, updated_at=utcnow()))
    return total_seen
