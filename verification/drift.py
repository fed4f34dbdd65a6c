"""Drift: every way a secondary's copies differ from what they should be, as data,
each finding with what to do about it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from geo_sync.db import utcnow
from geo_sync.paths import TEMP_PREFIX
from geo_sync.tracking import selection_row
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.type_map import REPLICATORS

STUCK_AFTER = timedelta(hours=1)
STUCK_RETRIES = 5


class Drift(StrEnum):
    """The kinds of drift a finding reports."""

    MISSING_ON_MIRROR = "missing_on_mirror"
    MISMATCHED = "mismatched"
    ORPHANED = "orphaned"
    MISSING_ON_PRIMARY = "missing_on_primary"
    STUCK = "stuck"


@dataclass(frozen=True)
class Finding:
    """One drift record."""

    kind: Drift
    type: str
    path: str
    detail: str
    action: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _exists(root: Path, path: str) -> bool:
    return (root / path).exists()


def find_drift(engine: Engine, mirror_root: Path, *, include_orphans: bool = True
               ) -> list[Finding]:
    """Compare the registries with the mirror storage; no network, no changes."""
    findings: list[Finding] = []
    now = utcnow()
    with engine.connect() as conn:
        selection = selection_row.applied(conn)
    for replicator in REPLICATORS.values():
        model, name = replicator.registry_table, replicator.name
        root = mirror_root / replicator.storage_dir
        with engine.connect() as conn:
            rows = conn.execute(select(
                model.id, model.path, model.state, model.tombstone, model.missing_on_primary,
                model.verification_state, model.verification_checksum,
                model.verification_expected, model.verification_error, model.mismatch_count,
                model.retry_count, model.last_error, model.updated_at, model.lease_until,
                model.mirror_path)).all()
        known = set()
        for row in rows:
            known.update({row.path, row.mirror_path or row.path})
            resync = f"geo-sync resync {name} --id {row.id}"
            if row.state == SyncState.SYNCED and not row.tombstone and not _exists(root, row.path):
                findings.append(Finding(Drift.MISSING_ON_MIRROR, name, row.path,
                                        "registry says synced but the copy is gone",
                                        f"{resync} (verification also catches this)"))
            if row.verification_state == VerificationState.FAILED or row.mismatch_count:
                findings.append(Finding(
                    Drift.MISMATCHED, name, row.path,
                    f"mirror {row.verification_checksum or 'missing'} vs primary "
                    f"{row.verification_expected}: {row.verification_error or ''}".strip(),
                    "check the item on the primary; then " + resync))
            if row.missing_on_primary:
                findings.append(Finding(Drift.MISSING_ON_PRIMARY, name, row.path,
                                        row.last_error or "the primary has no such item",
                                        "nothing: a delete event will remove it; if the "
                                        "primary lost it, restore it there"))
            stuck = (
                (row.state == SyncState.FAILED and row.retry_count >= STUCK_RETRIES)
                or (row.state == SyncState.STARTED and row.lease_until is not None
                    and row.lease_until < now - STUCK_AFTER)
                or (row.state == SyncState.PENDING and row.updated_at < now - STUCK_AFTER)
            )
            if stuck:
                findings.append(Finding(Drift.STUCK, name, row.path,
                                        f"{row.state} since {row.updated_at.isoformat()}"
                                        f" after {row.retry_count} retries: "
                                        f"{row.last_error or 'no error recorded'}",
                                        "is `secondary run` (and a worker) running? see "
                                        f"`geo-sync status`; then {resync}"))
        if include_orphans and root.is_dir():
            findings += [
                Finding(Drift.ORPHANED, name, path,
                        "on disk but unknown to the registry" if selection.selects(name, path)
                        else "not selected any more (the selection changed)",
                        "geo-sync orphans --delete (after a dry run)")
                for path in replicator.discover(root)
                if path not in known and TEMP_PREFIX not in path
            ]
    return findings
