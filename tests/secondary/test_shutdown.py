"""SIGTERM (even several at once) stops `secondary run` and `geo-sync worker` cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.deployment import TUNING, flush_queue, unique_queue
from tests.services import REDIS_URL
from tests.sites import GEO_SYNC, primary_site, secondary_site


def _start(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([GEO_SYNC, "--config", str(config), *args],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait_for_line(log: Path, text: str) -> None:
    for _ in range(300):
        if text in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {log}: {log.read_text()[-2000:]}")


def _terminate_repeatedly(proc: subprocess.Popen[bytes]) -> int:
    for _ in range(3):  # the group and a forwarding parent both signal: several arrive
        os.killpg(proc.pid, signal.SIGTERM)
        time.sleep(0.01)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the process ignored SIGTERM (deadlock in shutdown?)")


@pytest.mark.parametrize("broker", ["embedded", "redis"])
def test_repeated_sigterm_stops_the_daemon_and_workers(tmp_path: Path, broker: str) -> None:
    queue = unique_queue()
    with primary_site(tmp_path / "primary", None) as primary:
        secondary = secondary_site(
            tmp_path / "secondary", primary, None,
            broker_url="embedded" if broker == "embedded" else REDIS_URL,
            queue_name=queue, **TUNING)
        run_log = tmp_path / "run.log"
        run = _start(secondary.config, run_log, "secondary", "run")
        _wait_for_line(run_log, "became_active_cursor")
        if broker == "redis":
            worker_log = tmp_path / "worker.log"
            workers = _start(secondary.config, worker_log, "worker", "--processes", "2")
            _wait_for_line(worker_log, "worker_started")
            assert _terminate_repeatedly(workers) == 0
            assert worker_log.read_text().count("worker_stopped") == 2
        assert _terminate_repeatedly(run) == 0
        assert '"stopped"' in run_log.read_text()
        secondary.engine.dispose()
    flush_queue(queue)
