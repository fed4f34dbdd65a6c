"""`secondary run` as a real process survives its dependencies failing under it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from geo_sync.secondary import leader
from geo_sync.secondary.daemon import SecondaryDaemon
from geo_sync.tracking.models import Lease
from replicators.artifact import ArtifactRegistry
from tests.deployment import TUNING, Deployment, wait_for
from tests.services import private_postgres
from tests.sites import SecondarySite, primary_site, secondary_site


def _synced(deployment: Deployment, path: str) -> bool:
    try:
        with deployment.secondary.engine.connect() as conn:
            state = conn.execute(select(ArtifactRegistry.state)
                                 .where(ArtifactRegistry.path == path)).scalar()
    except Exception:  # the tracking DB may still be coming back
        return False
    return state == "synced" and (deployment.secondary.mirror("artifacts") / path).is_file()


def _alive_or_failed(proc: subprocess.Popen[bytes]) -> None:
    """The daemon either carries on or exits non-zero for its supervisor: never
    lingers alive but idle (that is what the other assertions catch), never exits 0."""
    code = proc.poll()
    assert code is None or code != 0, "secondary run exited 0 without being asked to"


def test_a_restarted_tracking_database_does_not_stop_secondary_run(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    with private_postgres() as tracking, primary_site(tmp_path / "primary", None) as primary:
        secondary = secondary_site(tmp_path / "secondary", primary, tracking.url,
                                   broker_url="embedded", **TUNING)
        deployment = Deployment("embedded", primary, secondary, logs)
        try:
            workload = deployment.workload(tmp_path / "scratch")
            deployment.start()
            workload.upload_artifact("before/a.bin", 1024)
            wait_for(lambda: _synced(deployment, "before/a.bin"), "the first artifact")
            secondary.engine.dispose()
            tracking.stop()
            # Longer than the cursor lease, so the lease runs out while the DB is down.
            wait_for(lambda: "cursor_lease" in (logs / "run.log").read_text()
                     or "cursor_error" in (logs / "run.log").read_text(),
                     "the daemon to notice the database is gone")
            tracking.start()
            workload.upload_artifact("after/b.bin", 2048)
            run = deployment.processes["run"]
            wait_for(lambda: _synced(deployment, "after/b.bin") or run.poll() is not None,
                     "the change published after the restart to be applied", timeout=120)
            _alive_or_failed(run)
            assert run.poll() is None, (
                f"secondary run exited {run.returncode}; expected it to carry on: "
                f"{(logs / 'run.log').read_text()[-3000:]}")
            assert _synced(deployment, "after/b.bin")
        finally:
            deployment.stop_all()
            secondary.engine.dispose()


def test_a_loop_that_dies_of_a_bug_stops_the_daemon_as_failed(
    secondary: SecondarySite,
) -> None:
    daemon = SecondaryDaemon(secondary.settings)
    try:
        def broken() -> None:
            raise KeyError("a bug")

        with pytest.raises(KeyError):
            daemon._guarded("geo-sync-test", broken)()
        assert daemon.failed.is_set(), "the failure is not reported to run_secondary"
        assert daemon.stop_event.is_set(), "the other loops were not told to stop"
    finally:
        daemon.runtime.close()



def test_a_long_outage_never_backs_the_whole_loop_off_past_the_probe_interval(
    secondary: SecondarySite,
) -> None:
    daemon = SecondaryDaemon(secondary.settings)
    try:
        delays = [daemon.probe_delay(failures) for failures in range(1, 200)]
        assert delays == sorted(delays), "the backoff shrinks as failures grow"
        assert max(delays) <= secondary.settings.recovery_probe_seconds
        assert delays[0] < secondary.settings.recovery_probe_seconds, "no backoff at all"
    finally:
        daemon.runtime.close()


# -- one step of `secondary run`: lead or stand by ------------------------------------


def test_one_lead_step_makes_one_daemon_active_and_the_other_a_standby_until_it_stops(
    secondary: SecondarySite,
) -> None:
    first, second = SecondaryDaemon(secondary.settings), SecondaryDaemon(secondary.settings)
    try:
        wait = first.lead_once()
        assert first.is_leader.is_set() and 0 < wait < first.settings.cursor_lease_seconds
        assert {name for name, t in first.loops.items() if t.is_alive()} == {
            "geo-sync-cursor", "geo-sync-scheduler"}
        second.lead_once()
        assert not second.is_leader.is_set() and second.loops == {}
        first.stop()
        first.run()  # after stop(): shuts down at once, giving the lease up
        assert not first.is_leader.is_set()
        assert not any(t.is_alive() for t in first.loops.values())
        second.lead_once()
        assert second.is_leader.is_set(), "the standby did not take the released lease"
        with secondary.engine.connect() as conn:
            holder = conn.execute(select(Lease.holder)
                                  .where(Lease.name == leader.CURSOR_LEASE)).scalar_one()
        assert holder == second.runtime.worker_id
    finally:
        for daemon in (first, second):
            if not daemon.runtime.stopping.is_set():
                daemon.stop()
                daemon.run()
