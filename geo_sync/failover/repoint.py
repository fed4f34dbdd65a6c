"""`geo-sync secondary repoint URL`: follow a new primary without copying again.

Checks the new primary (it must answer this secondary's credentials at an epoch not
below the one followed, and not be demoted), rewrites ``primary_url`` (and the secret,
if given) in the config, then backfills from the new catalog: a copy whose checksum
matches the catalog's is kept as it is, only what differs is made pending. Runs with
`secondary run` stopped (it holds the old URL); start it again afterwards.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.errors import GeoSyncError, SiteReadOnly
from geo_sync.failover.promote import cursor_alive
from geo_sync.files import write_atomically
from geo_sync.secondary.backfill import backfill
from geo_sync.secondary.runtime import open_runtime
from geo_sync.settings import SecondarySettings
from geo_sync.toml_out import dumps
from geo_sync.tracking import epoch_row
from geo_sync.tracking.models import CursorRow
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.type_map import REPLICATORS


@dataclass(frozen=True)
class Repointed:
    """The outcome: the epoch now followed, what was kept and what must be copied."""

    url: str
    epoch: int
    catalog_items: int
    kept_items: int
    kept_bytes: int
    to_copy_items: int
    to_copy_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "epoch": self.epoch, "catalog_items": self.catalog_items,
                "kept_items": self.kept_items, "kept_bytes": self.kept_bytes,
                "to_copy_items": self.to_copy_items, "to_copy_bytes": self.to_copy_bytes}


def _held(engine: Engine) -> tuple[int, int, int, int]:
    """(synced items, their bytes, items to copy, their bytes)."""
    synced = synced_bytes = to_copy = to_copy_bytes = 0
    with engine.connect() as conn:
        for replicator in REPLICATORS.values():
            model = replicator.registry_table
            live = model.tombstone.is_(False)
            done = model.state == SyncState.SYNCED.value
            row = conn.execute(select(
                func.count().filter(live, done),
                func.coalesce(func.sum(model.expected_size).filter(live, done), 0),
                func.count().filter(live, ~done),
                func.coalesce(func.sum(model.expected_size).filter(live, ~done), 0))).one()
            synced += int(row[0] or 0)
            synced_bytes += int(row[1] or 0)
            to_copy += int(row[2] or 0)
            to_copy_bytes += int(row[3] or 0)
    return synced, synced_bytes, to_copy, to_copy_bytes


def _know_verified_checksums(engine: Engine) -> None:
    """A copy synced from an event without a checksum (the primary took it later) was
    verified against the catalog's: record that as its expected checksum, so the new
    catalog (which carries it) finds it equal instead of changed."""
    with write_transaction(engine) as conn:
        for replicator in REPLICATORS.values():
            model = replicator.registry_table
            conn.execute(update(model).where(
                model.expected_checksum.is_(None), model.verification_expected.is_not(None),
                model.state == SyncState.SYNCED.value,
                model.verification_state == VerificationState.SUCCEEDED.value,
            ).values(expected_checksum=model.verification_expected))


def _rewrite_config(config: Path, url: str, secret: str | None) -> None:
    data = tomllib.loads(config.read_text())
    data["secondary"]["primary_url"] = url
    if secret is not None:
        data["secondary"]["secret"] = secret
    write_atomically(config, dumps(data))


def repoint(settings: SecondarySettings, config: Path, url: str,
            secret: str | None = None) -> Repointed:
    """Follow the primary at ``url``; see the module's docstring."""
    url = url.rstrip("/")
    new = settings.model_copy(update={"primary_url": url,
                                      **({"secret": secret} if secret else {})})
    runtime = open_runtime(new)
    try:
        if cursor_alive(runtime.engine):
            raise GeoSyncError("`secondary run` is running here",
                               hint="stop it (and this site's `geo-sync worker` processes), "
                               "repoint, then start them again")
        site = dict(runtime.client.status().get("site") or {})  # SplitBrain if older
        if site.get("demoted"):
            raise SiteReadOnly(f"the site at {url} was demoted: the primary is now "
                               f"{site.get('new_primary_url') or 'another site'}",
                               hint="repoint to the current primary")
        epoch = int(runtime.client.seen_epoch or site.get("epoch") or 0)
        _rewrite_config(config, url, secret)
        with write_transaction(runtime.engine) as conn:
            epoch_row.raise_to(conn, epoch, url)
            conn.execute(update(CursorRow).where(CursorRow.id == 1).values(
                backfill_required=True, last_error=None, updated_at=utcnow(),
                backfill_progress=f"repointed to {url}"))
        _know_verified_checksums(runtime.engine)
        seen = backfill(runtime, runtime.client)
        kept, kept_bytes, to_copy, to_copy_bytes = _held(runtime.engine)
        return Repointed(url, epoch, seen, kept, kept_bytes, to_copy, to_copy_bytes)
    finally:
        runtime.close()
