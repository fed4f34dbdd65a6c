"""`geo-sync drift`, `verify`, `resync` and `orphans` on a real converged secondary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from replicators.artifact import ArtifactRegistry
from tests.deployment import Deployment, deployment_for, wait_for


@pytest.fixture
def quiet(tmp_path: Path) -> Iterator[Deployment]:
    """An embedded deployment, converged and verified, with its daemon stopped."""
    with deployment_for("embedded", tmp_path) as deployment:
        workload = deployment.workload(tmp_path / "scratch")
        workload.initial(repositories=1, artifacts=3, logs=1)
        deployment.start()
        deployment.wait_converged()
        deployment.stop_all()
        yield deployment


def _artifact_rows(deployment: Deployment) -> dict[str, tuple[int, str]]:
    with deployment.secondary.engine.connect() as conn:
        return {r.path: (r.id, r.state) for r in conn.execute(
            select(ArtifactRegistry.path, ArtifactRegistry.id, ArtifactRegistry.state))}


def test_drift_reports_each_problem_with_what_to_do(quiet: Deployment) -> None:
    clean = quiet.secondary.cli("drift", "--json", check=False)
    assert clean.returncode == 0, clean.stdout
    artifacts = quiet.secondary.mirror("artifacts")
    (artifacts / "pipelines/0/artifacts.zip").unlink()
    (artifacts / "stray").mkdir()
    (artifacts / "stray/leftover.bin").write_bytes(b"x")
    found = quiet.secondary.cli("drift", "--json", check=False)
    assert found.returncode == 1
    findings = json.loads(found.stdout)
    kinds = {(f["kind"], f["path"]) for f in findings}
    assert ("missing_on_mirror", "pipelines/0/artifacts.zip") in kinds
    assert ("orphaned", "stray/leftover.bin") in kinds
    assert all(f["action"] for f in findings)
    assert f"drift: {len(findings)} finding(s)" in quiet.secondary.cli(
        "drift", check=False).stdout


def test_orphans_are_only_deleted_when_asked(quiet: Deployment) -> None:
    stray = quiet.secondary.mirror("artifacts") / "stray.bin"
    stray.write_bytes(b"x")
    listed = quiet.secondary.cli("orphans", check=False)
    assert listed.returncode == 1
    assert "would delete artifact stray.bin" in listed.stdout and stray.exists()
    assert quiet.secondary.cli("orphans", "--delete", check=False).returncode == 1
    assert not stray.exists()
    assert quiet.secondary.cli("orphans", check=False).returncode == 0
    assert (quiet.secondary.mirror("artifacts") / "pipelines/1/artifacts.zip").exists()


def test_resync_prints_its_plan_and_a_dry_run_changes_nothing(quiet: Deployment) -> None:
    rows = _artifact_rows(quiet)
    row_id, _ = rows["pipelines/2/artifacts.zip"]
    dry = quiet.secondary.cli("resync", "artifact", "--id", str(row_id), "--dry-run")
    assert "would resync: 1 item(s)" in dry.stdout
    assert _artifact_rows(quiet) == rows
    quiet.secondary.cli("resync", "artifact", "--id", str(row_id))
    assert _artifact_rows(quiet)["pipelines/2/artifacts.zip"] == (row_id, "pending")
    bad = quiet.secondary.cli("resync", "--id", "1", check=False)
    assert bad.returncode == 1 and "--id needs a TYPE" in bad.stderr
    both = quiet.secondary.cli("resync", "--failed", "--all", check=False)
    assert both.returncode == 1 and "choose one of" in both.stderr


def test_verify_checks_now_and_finds_a_corrupt_copy(quiet: Deployment) -> None:
    ok = quiet.secondary.cli("verify")
    assert "verified" in ok.stdout and "mismatch" not in ok.stdout
    corrupt = quiet.secondary.mirror("artifacts") / "pipelines/1/artifacts.zip"
    corrupt.write_bytes(b"garbage")
    result = quiet.secondary.cli("verify", "artifact", check=False)
    assert result.returncode == 1
    assert "1 mismatch" in result.stdout
    assert _artifact_rows(quiet)["pipelines/1/artifacts.zip"][1] == "failed"
    quiet.start()
    wait_for(lambda: corrupt.read_bytes() != b"garbage", "the resync to repair it", 60)
    status = quiet.status()
    assert status["types"]["artifact"]["failed"] == 0
