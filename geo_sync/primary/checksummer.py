"""The primary's own checksums: taken for items that have none and re-taken on an
interval, so every catalog row carries a checksum and when it was taken.

A row is only updated if it did not change while we hashed it (same
``updated_at``); a change in between leaves it for the next pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.errors import InvalidInput
from geo_sync.logging import get_logger
from geo_sync.paths import resolve_inside
from geo_sync.primary.models import CatalogItem
from replicators.type_map import original_for

log = get_logger("checksummer")
BATCH = 200


@dataclass(frozen=True)
class Checksum:
    """An item's size and checksum as just taken on disk, or None if it is gone."""

    size: int
    checksum: str
    taken_at: datetime


def take_checksum(engine: Engine, storage_root: Path, row_id: int) -> Checksum | None:
    """Hash one catalog item on disk now and store the result if the row is unchanged."""
    with engine.connect() as conn:
        row = conn.execute(select(CatalogItem.replicable_type, CatalogItem.path,
                                  CatalogItem.updated_at).where(CatalogItem.id == row_id)).first()
    if row is None:
        return None
    replicator = original_for(row.replicable_type)
    try:
        full = resolve_inside(storage_root / replicator.storage_dir, row.path)
        found = replicator.describe(full, row.path)
    except (FileNotFoundError, NotADirectoryError, InvalidInput):
        return None
    except Exception as exc:  # a repository being rewritten, a permission problem
        log.warning("checksum_failed", replicable=row.replicable_type, path=row.path,
                    error=str(exc))
        return None
    now = utcnow()
    with write_transaction(engine) as conn:
        conn.execute(update(CatalogItem)
                     .where(CatalogItem.id == row_id, CatalogItem.updated_at == row.updated_at)
                     .values(size=found.size, checksum=found.checksum, checksum_at=now))
    return Checksum(found.size, found.checksum, now)


def run_once(engine: Engine, storage_root: Path, reverify_after: float) -> int:
    """Checksum up to BATCH items that have none or whose checksum is older than
    ``reverify_after`` seconds; return how many were taken."""
    cutoff = utcnow() - timedelta(seconds=reverify_after)
    # Two questions, each answered from its own index (migration 0009) rather than one
    # OR over the whole catalog, sorted: items without a checksum first, then the
    # oldest checksums past the interval.
    with engine.connect() as conn:
        ids = list(conn.execute(
            select(CatalogItem.id).where(CatalogItem.checksum.is_(None))
            .order_by(CatalogItem.id).limit(BATCH)
        ).scalars())
        if len(ids) < BATCH:
            ids += conn.execute(
                select(CatalogItem.id)
                .where(CatalogItem.checksum_at < cutoff, CatalogItem.checksum.is_not(None))
                .order_by(CatalogItem.checksum_at).limit(BATCH - len(ids))
            ).scalars()
    taken = sum(1 for row_id in ids if take_checksum(engine, storage_root, row_id))
    if taken:
        log.info("checksums_taken", count=taken)
    return taken
