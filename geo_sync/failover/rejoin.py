"""`geo-sync primary rejoin`: a demoted primary becomes a secondary of the new one.

Its storage becomes the mirror; a fresh tracking DB is seeded with the items of its
own catalog that the new primary's catalog holds at the same path with the same
checksum (each synced), so the first backfill keeps those copies and copies only what
differs; verification then checks every kept copy against the new primary. What only
this site has (writes an unplanned promotion lost) is not seeded: it stays on disk,
where `geo-sync orphans` lists it for the operator to recover, and is never deleted
unless asked (`orphans --delete`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from geo_sync.db import make_engine, utcnow, write_transaction
from geo_sync.errors import GeoSyncError, InvalidInput
from geo_sync.primary import site_state
from geo_sync.primary.models import CatalogItem
from geo_sync.secondary.client import PrimaryClient
from geo_sync.secondary.site import init_secondary
from geo_sync.settings import PrimarySettings, SecondarySettings, load_settings
from geo_sync.tracking import sync_rows
from geo_sync.tracking.states import SyncState
from replicators.type_map import REPLICATORS

PAGE = 5000


def _new_catalog(settings: SecondarySettings) -> dict[tuple[str, str], tuple[str, str]]:
    """(type, record id) -> (path, checksum) of every checksummed item the new primary
    holds."""
    client = PrimaryClient(settings)
    found: dict[tuple[str, str], tuple[str, str]] = {}
    try:
        for replicator in REPLICATORS.values():
            after: int | None = 0
            while after is not None:
                page = client.catalog_page(replicator.name, after, 1000, total=False)
                for entry in page.entries():
                    if not isinstance(entry, InvalidInput) and entry.checksum:
                        found[(replicator.name, entry.record_id)] = (entry.path,
                                                                     entry.checksum)
                after = page.next_after
    finally:
        client.close()
    return found


def rejoin(primary: PrimarySettings, directory: Path, *, primary_url: str, name: str,
           secret: str, database_url: str | None, broker_url: str,
           queue_name: str) -> tuple[Path, int]:
    """Write the secondary's config in ``directory`` and seed its tracking DB; return the
    config's path and how many copies were kept for the backfill to check."""
    engine = make_engine(primary.database_url)
    try:
        with engine.connect() as conn:
            state = site_state.read_state(conn)
        if not state.demoted:
            raise GeoSyncError("this site is not demoted: it may still be the primary",
                               hint=f"run `geo-sync primary demote --new-primary {primary_url}` "
                               "first, once the new primary is serving")
        config = init_secondary(directory, primary_url=primary_url, name=name, secret=secret,
                                database_url=database_url, broker_url=broker_url,
                                extra={"mirror_root": str(primary.storage_root),
                                       "queue_name": queue_name})
        tracking_url = database_url or f"sqlite:///{directory.resolve() / 'tracking.db'}"
        new = _new_catalog(load_settings(config).require_secondary())
        tracking = make_engine(tracking_url)
        seeded = 0
        try:
            for replicator in REPLICATORS.values():
                after = 0
                while True:
                    with engine.connect() as conn:
                        rows = conn.execute(select(
                            CatalogItem.id, CatalogItem.record_id, CatalogItem.path,
                            CatalogItem.size, CatalogItem.checksum, CatalogItem.updated_at)
                            .where(CatalogItem.replicable_type == replicator.name,
                                   CatalogItem.id > after)
                            .order_by(CatalogItem.id).limit(PAGE)).all()
                    if not rows:
                        break
                    after = rows[-1].id
                    now = utcnow()
                    rows = [row for row in rows
                            if new.get((replicator.name, row.record_id))
                            == (row.path, row.checksum)]
                    values = [{**sync_rows.new_row(row.record_id, row.path, size=row.size,
                                                   checksum=row.checksum,
                                                   committed_at=row.updated_at),
                               "state": SyncState.SYNCED.value, "last_synced_at": now,
                               "change_synced_at": now}
                              for row in rows]
                    with write_transaction(tracking) as conn:
                        seeded += sync_rows.insert_ignore(conn, replicator.registry_table, values)
        finally:
            tracking.dispose()
        return config, seeded
    finally:
        engine.dispose()
