"""Recovery plans and their execution, on real tracking databases and a real mirror
directory: a plan names exactly the rows or files the execution then touches."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from geo_sync.db import write_transaction
from geo_sync.errors import InvalidInput, TransientError
from geo_sync.tracking import sync_rows
from geo_sync.tracking.states import SyncState
from replicators.artifact import ArtifactReplicator
from replicators.type_map import REPLICATORS
from verification.recovery import (
    delete_orphans,
    execute_resync,
    plan_orphans,
    select_rows,
)

MODEL = ArtifactReplicator.registry_table
KIND = ArtifactReplicator.name


def _rows(engine: Engine, *paths: str) -> dict[str, int]:
    with write_transaction(engine) as conn:
        sync_rows.insert_ignore(conn, MODEL, [sync_rows.new_row(p, p) for p in paths])
        return {p: i for i, p in conn.execute(select(MODEL.id, MODEL.path))}


def _states(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {p: s for p, s in conn.execute(select(MODEL.path, MODEL.state))}


def _fail(engine: Engine, row_id: int) -> None:
    with write_transaction(engine) as conn:
        (item,) = sync_rows.claim(conn, MODEL, [row_id], "w", 60)
        sync_rows.finish_failed(conn, MODEL, item, "w", TransientError("primary away"),
                                retry_cap=60, missing_cap=60)


def test_a_plan_by_id_needs_a_type_and_names_only_those_rows(
    tracking_engine: Engine,
) -> None:
    ids = _rows(tracking_engine, "a.zip", "b.zip")
    with pytest.raises(InvalidInput, match="needs a TYPE"):
        select_rows(tracking_engine, None, ids=(ids["a.zip"],))
    plan = select_rows(tracking_engine, KIND, ids=(ids["a.zip"],))
    assert [(p.type, p.path, p.state) for p in plan] == [(KIND, "a.zip", SyncState.PENDING)]


def test_a_failed_plan_names_the_failed_rows_of_every_type(tracking_engine: Engine) -> None:
    ids = _rows(tracking_engine, "ok.zip", "broken.zip")
    _fail(tracking_engine, ids["broken.zip"])
    assert [p.path for p in select_rows(tracking_engine, None, failed=True)] == ["broken.zip"]
    everything = select_rows(tracking_engine, None)
    assert {p.type for p in everything} <= set(REPLICATORS)
    assert sorted(p.path for p in everything) == ["broken.zip", "ok.zip"]


def test_a_resync_makes_planned_rows_pending_and_leaves_held_rows_alone(
    tracking_engine: Engine,
) -> None:
    ids = _rows(tracking_engine, "failed.zip", "held.zip", "other.zip")
    _fail(tracking_engine, ids["failed.zip"])
    with write_transaction(tracking_engine) as conn:
        sync_rows.claim(conn, MODEL, [ids["held.zip"], ids["other.zip"]], "w", 60)
    plan = select_rows(tracking_engine, KIND, ids=(ids["failed.zip"], ids["held.zip"]))
    assert execute_resync(tracking_engine, plan) == 1
    assert _states(tracking_engine) == {"failed.zip": SyncState.PENDING,
                                        "held.zip": SyncState.STARTED,
                                        "other.zip": SyncState.STARTED}


def test_orphans_are_the_copies_no_row_accounts_for_and_only_they_are_deleted(
    tracking_engine: Engine, tmp_path: Path
) -> None:
    _rows(tracking_engine, "known/a.zip")
    root = tmp_path / "mirror" / ArtifactReplicator.storage_dir
    for name in ("known/a.zip", "stray/b.zip", "c.zip"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    plan = plan_orphans(tracking_engine, tmp_path / "mirror")
    assert sorted((f.type, f.path) for f in plan) == [(KIND, "c.zip"), (KIND, "stray/b.zip")]
    assert delete_orphans(tmp_path / "mirror", plan) == 2
    assert [p.relative_to(root).as_posix() for p in sorted(root.rglob("*.zip"))] == [
        "known/a.zip"]
