"""The real thing, end to end: `primary serve`, `secondary run` and `geo-sync worker`
processes on PostgreSQL and Redis (production), and the same scenarios in embedded
mode (SQLite, in-process broker). Faults are real: SIGKILL, a stopped primary."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from geo_sync.primary.publish import Change
from geo_sync.tracking.models import Lease
from replicators.artifact import ArtifactRegistry
from tests.deployment import Deployment, deployment_for, wait_for


@pytest.fixture(params=["production", "embedded"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    with deployment_for(request.param, tmp_path) as built:
        yield built


def test_the_mirror_converges_through_a_ci_workload(deployment: Deployment,
                                                   tmp_path: Path) -> None:
    workload = deployment.workload(tmp_path / "scratch")
    workload.initial()
    deployment.start()
    deployment.wait_converged()  # backfill of existing data, no events for it
    for number in (1, 2, 3):
        workload.round(number)
    deployment.wait_converged()
    status = deployment.status()
    assert all(c["synced"] == c["total"] and c["failed"] == 0 for c in status["types"].values())
    assert status["lag"]["events"] == 0
    assert status["primary"]["reachable"]


def test_a_worker_killed_mid_transfer_leaves_nothing_half_written(
    deployment: Deployment, tmp_path: Path
) -> None:
    workload = deployment.workload(tmp_path / "scratch")
    deployment.start()
    wait_for(deployment.caught_up, "the first backfill")
    target = deployment.secondary.mirror("artifacts") / "big" / "artifact.bin"

    def partial_transfer() -> bool:
        return any(p.stat().st_size > 0 for p in deployment.temp_files())

    workload.upload_artifact("big/artifact.bin", 768 * 1024 * 1024)
    wait_for(partial_transfer, "the transfer to start", timeout=60)
    deployment.kill_workers()
    assert not target.exists(), "a half-written file is visible at the final path"
    leftovers = deployment.temp_files()
    assert leftovers, "the kill came too late to interrupt the transfer"
    deployment.restart_workers()
    deployment.wait_converged()
    wait_for(lambda: not deployment.temp_files(), "the janitor to remove the leftover",
             timeout=60)


def test_the_primary_down_for_a_while_is_survived(deployment: Deployment,
                                                  tmp_path: Path) -> None:
    workload = deployment.workload(tmp_path / "scratch")
    workload.initial(repositories=2, artifacts=4, logs=2)
    deployment.start()
    deployment.wait_converged()
    deployment.primary.stop()
    workload.round(1)  # the CI site keeps working while its Geo API is down

    def unreachable_shown() -> bool:
        status = deployment.status()
        return not status["primary"]["reachable"] and "unreachable" in str(
            status["cursor"]["last_error"])

    wait_for(unreachable_shown, "status to show the primary unreachable")
    assert all(p.poll() is None for p in deployment.processes.values()), "a daemon died"
    deployment.primary.start()
    deployment.wait_converged()
    assert deployment.status()["cursor"]["last_error"] is None


def test_an_item_deleted_before_it_syncs_leaves_no_trace(deployment: Deployment,
                                                         tmp_path: Path) -> None:
    workload = deployment.workload(tmp_path / "scratch")
    workload.initial(repositories=1, artifacts=2, logs=1)
    deployment.start()
    deployment.wait_converged()
    deployment.kill_workers()
    if not deployment.production:
        deployment.start_run()  # embedded: keep the cursor; hold the work back instead
        deployment.kill_workers()
    # Created and deleted before any worker looks at it.
    workload.upload_artifact("short/lived.bin", 4096)
    workload.delete_artifact("short/lived.bin")
    # Deleted on the primary without an event (yet): it will be missing on primary.
    workload.upload_artifact("vanishing/item.bin", 4096)
    (deployment.primary.storage("artifacts") / "vanishing/item.bin").unlink()
    deployment.restart_workers()

    def missing_shown() -> bool:
        return deployment.status()["types"]["artifact"]["missing_on_primary"] == 1

    wait_for(missing_shown, "status to show the item missing on primary")
    deployment.publish(Change("artifact", "deleted", "vanishing/item.bin"))
    deployment.wait_converged()
    with deployment.secondary.engine.connect() as conn:
        left = conn.execute(select(ArtifactRegistry.path)).scalars().all()
    assert "short/lived.bin" not in left and "vanishing/item.bin" not in left


def test_a_standby_cursor_takes_over_when_the_active_one_dies(deployment: Deployment,
                                                              tmp_path: Path) -> None:
    if not deployment.production:
        pytest.skip("one process per site in embedded mode; takeover is a production concern")
    workload = deployment.workload(tmp_path / "scratch")
    workload.initial(repositories=1, artifacts=2, logs=1)
    first = deployment.start_run("run-a")
    second = deployment.start_run("run-b")
    deployment.start_workers()

    def holder() -> str | None:
        with deployment.secondary.engine.connect() as conn:
            return conn.execute(select(Lease.holder)).scalar()

    wait_for(lambda: holder() is not None, "a cursor to take the lease")
    deployment.wait_converged()
    active = holder()
    assert active is not None
    pid = int(active.split(":")[1])
    assert pid in (first.pid, second.pid)
    os.kill(pid, signal.SIGKILL)
    deployment.processes.pop("run-a" if pid == first.pid else "run-b").wait()
    workload.round(1)
    wait_for(lambda: holder() not in (None, active), "the standby to take over")
    deployment.wait_converged()
