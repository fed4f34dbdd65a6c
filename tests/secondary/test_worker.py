"""`geo-sync worker` never idles with part of itself gone: it exits for its supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.deployment import TUNING, wait_for
from tests.services import private_redis
from tests.sites import GEO_SYNC, primary_site, secondary_site


def test_a_worker_process_that_dies_takes_the_worker_command_down_non_zero(
    tmp_path: Path,
) -> None:
    with private_redis() as broker, primary_site(tmp_path / "primary", None) as primary:
        secondary = secondary_site(tmp_path / "secondary", primary, None,
                                   broker_url=broker.url, **TUNING)
        log = tmp_path / "worker.log"
        proc = subprocess.Popen([GEO_SYNC, "--config", str(secondary.config), "worker",
                                 "--processes", "2"], stdout=log.open("wb"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: log.read_text().count("worker_started") == 2, "two workers")
            os.kill(_worker_children(proc.pid)[-1], signal.SIGKILL)
            code = proc.wait(timeout=90)
            assert code != 0, "the worker command exited 0 with a worker process gone"
            assert "a worker process exited on its own" in log.read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("the worker command kept running with a worker process gone")
            secondary.engine.dispose()


def _worker_children(pid: int) -> list[int]:
    listing = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid=,args="],
                             capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines()
            if "resource_tracker" not in line]
