"""A running mirror, corrupted six ways, detects and repairs itself; a stale primary
checksum is fixed at the source instead of looping; repeated mismatches stop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from geo_sync.db import write_transaction
from geo_sync.primary.models import CatalogItem
from geo_sync.secondary.cursor import LogCursor
from geo_sync.secondary.runtime import open_runtime
from geo_sync.tracking import sync_rows, verification_rows
from geo_sync.tracking.states import Verdict
from replicators.artifact import ArtifactRegistry
from replicators.repository import RepositoryRegistry
from replicators.type_map import REPLICATORS
from tests.compare import differences
from tests.deployment import Deployment, deployment_for, wait_for
from tests.gitutil import git
from verification.verifier import verify_one

FAST_REVERIFY = {"reverify_after_seconds": 2.0}


@pytest.fixture(params=["production", "embedded"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    with deployment_for(request.param, tmp_path, **FAST_REVERIFY) as built:
        yield built


def _unverified(deployment: Deployment) -> int:
    with deployment.secondary.engine.connect() as conn:
        return sum(conn.execute(select(func.count()).where(
            r.registry_table.verification_state != "succeeded")).scalar_one()
            for r in REPLICATORS.values())


def _all_verified(deployment: Deployment) -> bool:
    return deployment.converged() and _unverified(deployment) == 0


def test_a_mirror_corrupted_six_ways_repairs_itself(deployment: Deployment,
                                                    tmp_path: Path) -> None:
    workload = deployment.workload(tmp_path / "scratch")
    workload.initial(repositories=3, artifacts=3, logs=1)
    workload.archive_log("jobs/0/trace.log")
    deployment.start()
    wait_for(lambda: _all_verified(deployment), "everything synced and verified", 150)

    repos = deployment.secondary.mirror("repositories")
    artifacts = deployment.secondary.mirror("artifacts")
    logs = deployment.secondary.mirror("job_logs")
    flipped = artifacts / "pipelines/0/artifacts.zip"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))                                   # a byte flipped
    (artifacts / "pipelines/1/artifacts.zip").unlink()                 # a file deleted
    log = logs / "jobs/0/trace.log"
    log.write_bytes(log.read_bytes()[:10])                             # a log truncated
    git("update-ref", "refs/heads/main", "refs/heads/main~1",
        cwd=repos / "group0/project0.git")                             # a ref moved
    head = git("rev-parse", "HEAD", cwd=repos / "group1/project1.git").stdout.strip()
    git("update-ref", "refs/heads/intruder", head,
        cwd=repos / "group1/project1.git")                             # an extra ref
    git("repack", "-a", "-d", "-q", cwd=repos / "group0/project2.git")
    for pack in (repos / "group0/project2.git/objects/pack").glob("*.pack"):
        pack.unlink()                                                  # a pack removed
    assert len(differences(deployment.primary.settings.storage_root,
                           deployment.secondary.settings.mirror_root)) >= 4

    wait_for(lambda: _all_verified(deployment), "the mirror to repair itself", 180)
    assert git("fsck", "--strict", cwd=repos / "group0/project2.git").returncode == 0
    status = deployment.status()
    assert all(c["failed"] == 0 for c in status["types"].values())


def test_a_stale_primary_checksum_is_retaken_instead_of_resyncing(
    deployment: Deployment, tmp_path: Path
) -> None:
    workload = deployment.workload(tmp_path / "scratch")
    workload.upload_artifact("a.bin", 64 * 1024)
    deployment.start()
    wait_for(lambda: _all_verified(deployment), "the artifact synced and verified", 150)
    with deployment.secondary.engine.connect() as conn:
        synced_at = conn.execute(select(ArtifactRegistry.last_synced_at)).scalar_one()
    with write_transaction(deployment.primary.engine) as conn:  # a wrong stored checksum
        conn.execute(update(CatalogItem).values(checksum="f" * 64))

    def fixed_at_the_source() -> bool:
        with deployment.primary.engine.connect() as conn:
            return conn.execute(select(CatalogItem.checksum)).scalar_one() != "f" * 64

    wait_for(fixed_at_the_source, "the verifier to have the primary re-take it", 60)
    wait_for(lambda: _all_verified(deployment), "verification to succeed", 60)
    with deployment.secondary.engine.connect() as conn:
        row = conn.execute(select(ArtifactRegistry.last_synced_at,
                                  ArtifactRegistry.mismatch_count)).one()
    assert row.last_synced_at == synced_at, "the good copy was downloaded again"
    assert row.mismatch_count == 0


def test_a_copy_that_keeps_mismatching_stops_after_the_bounded_rounds(
    tracking_engine: object,
) -> None:
    engine = tracking_engine
    with write_transaction(engine) as conn:  # type: ignore[arg-type]
        sync_rows.insert_ignore(conn, ArtifactRegistry, [sync_rows.new_row("a", "a.bin")])
    outcomes = []
    for _ in range(3):
        with write_transaction(engine) as conn:  # type: ignore[arg-type]
            conn.execute(update(ArtifactRegistry).values(state="synced",
                                                         verification_state="pending"))
            [item] = verification_rows.claim(conn, ArtifactRegistry,
                                  conn.execute(select(ArtifactRegistry.id)).scalars().all(), 30)
            outcomes.append(
                verification_rows.mismatched(conn, ArtifactRegistry, item, mirror="1" * 64,
                                              primary="2" * 64, max_rounds=3,
                                              retry_cap=60))
    with engine.connect() as conn:  # type: ignore[attr-defined]
        row = conn.execute(select(ArtifactRegistry.verification_state,
                                  ArtifactRegistry.verification_error,
                                  ArtifactRegistry.state)).one()
    assert outcomes == [Verdict.MISMATCH, Verdict.MISMATCH, Verdict.GAVE_UP]
    assert row.verification_state == "failed"
    assert "needs attention" in row.verification_error
    assert row.state == "synced", "no further resync loop"


def test_a_copy_behind_a_push_it_has_not_applied_is_not_blamed(deployment: Deployment,
                                                               tmp_path: Path) -> None:
    """A busy repository verified between a push and that push's event reaching the
    cursor differs from the primary without being wrong; only once the cursor is past
    the event does the same difference count as a mismatch."""
    workload = deployment.workload(tmp_path / "scratch")
    workload.create_repository("g/busy.git", commits=2)
    deployment.start()
    wait_for(lambda: _all_verified(deployment), "the repository synced and verified", 150)
    deployment.stop_all()  # nothing applies events now
    workload.push("g/busy.git")

    def primary_checksummed() -> bool:
        with deployment.primary.engine.connect() as conn:
            return conn.execute(select(CatalogItem.checksum)).scalar_one() is not None

    wait_for(primary_checksummed, "the primary to checksum the pushed repository", 60)
    runtime = open_runtime(deployment.secondary.settings)
    model = RepositoryRegistry

    def verify() -> str:
        with write_transaction(runtime.engine) as conn:
            conn.execute(update(model).values(verification_state="pending"))
            claimed = verification_rows.claim(
                conn, model, conn.execute(select(model.id)).scalars().all(),
                                   30)
        return verify_one(runtime, REPLICATORS["repository"], claimed[0]).verdict

    try:
        assert verify() == "postponed"
        with runtime.engine.connect() as conn:
            row = conn.execute(select(model.state, model.mismatch_count,
                                      model.verification_error)).one()
        assert (row.state, row.mismatch_count) == ("synced", 0)
        assert "changed on the primary" in row.verification_error

        assert LogCursor(runtime).run_once(wait=0) == 1
        with write_transaction(runtime.engine) as conn:  # pretend the stale copy is current
            conn.execute(update(model).values(state="synced"))
        assert verify() == "mismatch", "past the event, a stale copy must be blamed"
    finally:
        runtime.close()
