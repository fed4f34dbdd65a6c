"""Processes killed mid-work: a worker mid-transfer, `secondary run` mid-page, `primary
serve` mid-transfer, and a double SIGTERM. Nothing half-written, nothing lost."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from geo_sync.tracking.models import CursorRow
from tests.deployment import wait_for
from tests.faults.cells import begin, partial_transfer, pending, unreachable
from tests.faults.rig import Rig, fault_rig, kill_primary, start_primary
from tests.faults.toxiproxy_api import ToxiproxyApi

# Cells run one after another on one xdist worker (make test): each starts a primary, a
# secondary's daemons and private services, and two at once on two cores starve both.
pytestmark = pytest.mark.xdist_group("faults")

BIG = "big/transfer.bin"


@pytest.fixture
def rig(tmp_path: Path, toxiproxy_server: ToxiproxyApi) -> Iterator[Rig]:
    with fault_rig(tmp_path, toxiproxy_server) as built:
        yield built


def slow_big_transfer(rig: Rig) -> Path:
    """A 4 MiB artifact over a 1 MB/s link, caught with part of it in a temp file."""
    rig.add_toxic(type="bandwidth", attributes={"rate": 1000})
    rig.workload.upload_artifact(BIG, 4 * 1024 * 1024)
    wait_for(lambda: partial_transfer(rig), "the transfer to start", 60)
    return rig.secondary.mirror("artifacts") / BIG


def test_a_worker_killed_mid_transfer_leaves_nothing_half_written(rig: Rig) -> None:
    begin(rig)
    target = slow_big_transfer(rig)
    rig.deployment.kill("workers")
    assert not target.exists(), "a half-written file is visible at the final path"
    rig.workload.round(1)
    rig.wait_status(pending, "the work left undone by the dead worker")
    rig.remove_toxics()
    rig.deployment.start_workers()
    rig.converge()


def test_secondary_run_killed_mid_page_resumes_without_loss(rig: Rig) -> None:
    begin(rig)

    def applied() -> int:
        with rig.secondary.engine.connect() as conn:
            return int(conn.execute(select(CursorRow.events_applied)).scalar() or 0)

    before = applied()
    rig.add_toxic(type="latency", attributes={"latency": 150})  # pages arrive slowly
    for number in (1, 2, 3):
        rig.workload.round(number)
    for n in range(40):
        rig.workload.upload_artifact(f"burst/{n}/artifacts.zip", 2048)
    wait_for(lambda: applied() > before, "the cursor to start on the burst", 60)
    rig.deployment.kill("run")
    rig.wait_status(pending, "the events not applied yet")
    rig.remove_toxics()
    rig.deployment.start_run()
    rig.converge()


def test_primary_serve_killed_mid_transfer_is_survived(rig: Rig) -> None:
    begin(rig)
    target = slow_big_transfer(rig)
    kill_primary(rig.primary)
    assert not target.exists()
    rig.wait_status(unreachable, "the primary unreachable")
    rig.remove_toxics()
    start_primary(rig.primary)
    rig.converge()


def test_a_double_sigterm_stops_the_daemons_cleanly_mid_transfer(rig: Rig) -> None:
    begin(rig)
    target = slow_big_transfer(rig)
    procs = dict(rig.deployment.processes)
    for _ in range(2):
        for proc in procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
        time.sleep(0.2)
    for name, proc in procs.items():
        try:
            proc.wait(timeout=30)
        except Exception:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"{name} ignored two SIGTERMs for 30 s") from None
        rig.deployment.processes.pop(name)
    # SIGTERM lets the current item finish: at the final path it is whole, or absent.
    source = rig.primary.storage("artifacts") / BIG
    assert not target.exists() or target.read_bytes() == source.read_bytes(), \
        "a half-written file is visible at the final path"
    rig.workload.round(1)  # the CI site goes on while the secondary is stopped
    rig.wait_status(pending, "the work waiting for the stopped daemons")
    rig.remove_toxics()
    rig.deployment.start()
    rig.converge()
