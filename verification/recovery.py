"""Recovery as plans: what a resync or an orphan clean-up would do, printed (and
reviewable with --dry-run) before anything is executed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, or_, select

from geo_sync.db import write_transaction
from geo_sync.errors import InvalidInput
from geo_sync.paths import resolve_inside
from geo_sync.tracking import sync_rows
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.base import Copy
from replicators.transfer import remove_path
from replicators.type_map import copies, copy_for
from verification.drift import Drift, Finding, find_drift


@dataclass(frozen=True)
class Planned:
    """One row a resync or verify would act on."""

    type: str
    id: int
    path: str
    state: str
    verification_state: str


def _replicators(type_name: str | None) -> list[type[Copy]]:
    return [copy_for(type_name)] if type_name else copies()


def select_rows(engine: Engine, type_name: str | None, *, ids: tuple[int, ...] = (),
                failed: bool = False) -> list[Planned]:
    """Rows by id (needs a type), or every failed/mismatched one, or all."""
    if ids and not type_name:
        raise InvalidInput("--id needs a TYPE (ids are per type)")
    planned = []
    for replicator in _replicators(type_name):
        model = replicator.registry_table
        query = select(model.id, model.path, model.state, model.verification_state).where(
            model.tombstone.is_(False))
        if ids:
            query = query.where(model.id.in_(ids))
        if failed:
            query = query.where(or_(model.state == SyncState.FAILED,
                                    model.verification_state == VerificationState.FAILED,
                                    model.mismatch_count > 0))
        with engine.connect() as conn:
            planned += [Planned(replicator.name, *row) for row in
                        conn.execute(query.order_by(model.id))]
    return planned


def execute_resync(engine: Engine, plan: list[Planned]) -> int:
    """Make the planned rows pending again (rows a worker holds right now are skipped)."""
    done = 0
    for replicator in copies():
        ids = [p.id for p in plan if p.type == replicator.name]
        if ids:
            with write_transaction(engine) as conn:
                done += len(sync_rows.resync(conn, replicator.registry_table,
                                            replicator.registry_table.id.in_(ids)))
    return done


def plan_orphans(engine: Engine, mirror_root: Path) -> list[Finding]:
    """Copies on disk that no registry row accounts for."""
    return [f for f in find_drift(engine, mirror_root) if f.kind == Drift.ORPHANED]


def delete_orphans(mirror_root: Path, plan: list[Finding]) -> int:
    """Remove the planned orphans (each vanishes from its path in one step)."""
    for finding in plan:
        root = mirror_root / copy_for(finding.type).storage_dir
        remove_path(resolve_inside(root, finding.path))
    return len(plan)
