"""find_drift reads the registries against the mirror's storage and reports each kind
of drift as data, with what to do; it changes nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.tracking import sync_rows
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.artifact import ArtifactReplicator
from verification.drift import STUCK_RETRIES, find_drift

Reg = ArtifactReplicator.registry_table


def _rows(engine: Engine, **by_path: dict[str, object]) -> None:
    with write_transaction(engine) as conn:
        sync_rows.insert_ignore(conn, Reg, [sync_rows.new_row(p, p, size=1)
                                            for p in by_path])
        for path, values in by_path.items():
            # Test setup: put rows straight into the states under test.
            conn.execute(update(Reg).where(Reg.path == path).values(**values))


def _kinds(engine: Engine, mirror: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for finding in find_drift(engine, mirror):
        assert finding.type == ArtifactReplicator.name and finding.action
        found.setdefault(finding.kind, set()).add(finding.path)
    return found


def test_each_kind_of_drift_is_reported_once_with_an_action(
        tracking_engine: Engine, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    root = mirror / ArtifactReplicator.storage_dir
    root.mkdir(parents=True)
    for name in ("ok.bin", "wrong.bin", "orphan.bin"):
        (root / name).write_bytes(b"x")
    old = utcnow() - timedelta(hours=2)
    _rows(tracking_engine,
          **{"ok.bin": {"state": SyncState.SYNCED},
             "gone.bin": {"state": SyncState.SYNCED},
             "wrong.bin": {"state": SyncState.SYNCED,
                           "verification_state": VerificationState.FAILED},
             "stuck.bin": {"state": SyncState.FAILED, "retry_count": STUCK_RETRIES},
             "idle.bin": {"state": SyncState.PENDING, "updated_at": old},
             "lost.bin": {"state": SyncState.FAILED, "missing_on_primary": True}})
    with tracking_engine.connect() as conn:
        before = conn.execute(select(Reg.__table__).order_by(Reg.id)).all()
    assert _kinds(tracking_engine, mirror) == {
        "missing_on_mirror": {"gone.bin"},
        "mismatched": {"wrong.bin"},
        "stuck": {"stuck.bin", "idle.bin"},
        "missing_on_primary": {"lost.bin"},
        "orphaned": {"orphan.bin"},
    }
    with tracking_engine.connect() as conn:
        assert conn.execute(select(Reg.__table__).order_by(Reg.id)).all() == before


def test_a_clean_mirror_has_no_drift(tracking_engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "mirror" / ArtifactReplicator.storage_dir
    root.mkdir(parents=True)
    (root / "a.bin").write_bytes(b"x")
    _rows(tracking_engine, **{"a.bin": {"state": SyncState.SYNCED}})
    assert find_drift(tracking_engine, tmp_path / "mirror") == []
