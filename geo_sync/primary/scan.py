"""Reconciling the catalog with what is on disk.

For CI systems that cannot call us, and for data that existed before geo-sync:
walk every storage root, compare each item with its catalog row, and publish
``created`` for new items, the type's change event for changed ones and
``deleted`` for items that vanished. Planning is separate from publishing so
``scan --dry-run`` can print the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, select

from geo_sync.db import write_transaction
from geo_sync.errors import InvalidInput
from geo_sync.logging import get_logger
from geo_sync.paths import resolve_inside
from geo_sync.primary.models import CatalogItem
from geo_sync.primary.publish import Change, publish
from replicators.base import KnownItem, Original
from replicators.type_map import originals

log = get_logger("scan")
BATCH = 500


@dataclass(frozen=True)
class ScanPlan:
    """The changes a scan would publish, and the on-disk names it had to skip."""

    changes: list[Change]
    skipped: list[str]


def _known(conn: Connection, replicator: type[Original]) -> dict[str, tuple[str, KnownItem]]:
    rows = conn.execute(
        select(CatalogItem.record_id, CatalogItem.path, CatalogItem.size, CatalogItem.checksum)
        .where(CatalogItem.replicable_type == replicator.name)
    ).all()
    return {row.path: (row.record_id, KnownItem(row.path, row.size, row.checksum)) for row in rows}


def plan_scan(engine: Engine, storage_root: Path) -> ScanPlan:
    """Compare every storage root with the catalog; publish nothing."""
    changes: list[Change] = []
    skipped: list[str] = []
    for replicator in originals():
        root = storage_root / replicator.storage_dir
        with engine.connect() as conn:
            known = _known(conn, replicator)
        on_disk: set[str] = set()
        if root.is_dir():
            for relpath in replicator.discover(root):
                try:
                    replicator.validate_path(relpath)
                    full = resolve_inside(root, relpath)
                except InvalidInput as exc:
                    skipped.append(f"{replicator.storage_dir}/{relpath}: {exc.message}")
                    continue
                on_disk.add(relpath)
                found = replicator.describe(full, relpath)
                entry = known.get(relpath)
                if entry is None:
                    event: str | None = replicator.created_event
                    record_id = None
                else:
                    record_id, known_item = entry
                    event = replicator.change_event(known_item, found)
                if event is not None:
                    changes.append(Change(replicator.name, event, relpath, record_id=record_id,
                                          size=found.size, checksum=found.checksum))
        changes.extend(
            Change(replicator.name, "deleted", path, record_id=record_id)
            for path, (record_id, _) in sorted(known.items())
            if path not in on_disk
        )
    return ScanPlan(changes=changes, skipped=skipped)


def apply_plan(engine: Engine, plan: ScanPlan) -> int:
    """Publish a plan's changes in batches; return how many events were written."""
    for start in range(0, len(plan.changes), BATCH):
        with write_transaction(engine) as conn:
            for change in plan.changes[start : start + BATCH]:
                publish(conn, change)
    for name in plan.skipped:
        log.warning("scan_skipped_unsafe_name", item=name)
    log.info("scan_published", events=len(plan.changes), skipped=len(plan.skipped))
    return len(plan.changes)
