"""The cheap sweep: a stat of every verified copy against its fingerprint at the time it
was verified, so corruption is found in minutes rather than at the next full
re-verification.

A copy whose fingerprint differs (or that is gone) goes to full verification at once;
one verified before fingerprints existed adopts its current one (the paced
re-verification checks it within the window anyway). The sweep reads no content:
a byte flipped without touching the mtime is left to the full re-verification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select, update

from geo_sync.db import write_transaction
from geo_sync.errors import GeoSyncError
from geo_sync.tracking import verification_rows
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.base import Copy


@dataclass
class SweepChunk:
    """What one chunk of the sweep saw; ``next_after`` is None once the table is done."""

    checked: int = 0
    suspicious: list[int] = field(default_factory=list)
    adopted: int = 0
    next_after: int | None = None


def _fingerprint(replicator: type[Copy], root: Path, path: str) -> str | None:
    # No resolve_inside here: its realpath costs more than the stat, and the sweep only
    # looks (a path that escapes through a symlink is caught by the verification it
    # triggers, which resolves it before reading). The stored path was validated.
    try:
        return replicator.fingerprint(root / path)
    except (OSError, GeoSyncError):  # gone, unreadable, or no longer a repository
        return None


def sweep_chunk(engine: Engine, replicator: type[Copy], mirror_root: Path,
                after_id: int, limit: int) -> SweepChunk:
    """Check up to ``limit`` verified rows with id above ``after_id``."""
    model = replicator.registry_table
    root = mirror_root / replicator.storage_dir
    with engine.connect() as conn:
        rows = conn.execute(
            select(model.id, model.path, model.verified_fingerprint)
            .where(model.id > after_id, model.state == SyncState.SYNCED.value,
                   model.verification_state == VerificationState.SUCCEEDED.value)
            .order_by(model.id).limit(limit)).all()
    result = SweepChunk(checked=len(rows))
    adopt: dict[int, str] = {}
    for row in rows:
        seen = _fingerprint(replicator, root, row.path)
        if row.verified_fingerprint is None and seen is not None:
            adopt[row.id] = seen
        elif seen != row.verified_fingerprint:
            result.suspicious.append(row.id)
    if result.suspicious or adopt:
        with write_transaction(engine) as conn:
            if result.suspicious:
                verification_rows.suspect(conn, model, result.suspicious)
            for row_id, seen in adopt.items():
                result.adopted += conn.execute(
                    update(model).where(model.id == row_id,
                                        model.verified_fingerprint.is_(None))
                    .values(verified_fingerprint=seen)).rowcount or 0
    if len(rows) == limit:
        result.next_after = rows[-1].id
    return result
