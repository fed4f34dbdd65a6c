"""`primary serve --processes N`: N processes answer on one port, and they live and
die together: SIGTERM stops them all (exit 0), one dying takes the command down
non-zero for its supervisor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from geo_sync.settings import Settings
from tests.deployment import wait_for
from tests.sites import GEO_SYNC, PrimarySite, primary_site, wait_for_port


@contextmanager
def _serving(primary: PrimarySite, log: Path, processes: int
             ) -> Iterator[subprocess.Popen[bytes]]:
    port = int(primary.url.rsplit(":", 1)[1])
    proc = subprocess.Popen([GEO_SYNC, "--config", str(primary.config), "primary", "serve",
                             "--processes", str(processes)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for_port(port, proc, deadline=90)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _servers(pid: int) -> list[int]:
    listing = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid=,args="],
                             capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines()
            if "primary serve" in line]


@pytest.fixture
def stopped_primary(tmp_path: Path) -> Iterator[PrimarySite]:
    with primary_site(tmp_path / "primary", None, serve=False) as site:
        yield site


def test_every_process_answers_and_sigterm_stops_them_all(stopped_primary: PrimarySite,
                                                          tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with _serving(stopped_primary, log, 3) as proc:
        wait_for(lambda: len(_servers(proc.pid)) == 3, "three serving processes")
        children = _servers(proc.pid)
        for _ in range(30):  # a new connection each time: any process may answer
            response = httpx.get(f"{stopped_primary.api}/status",
                                 headers=stopped_primary.headers(), timeout=60)
            assert response.status_code == 200, response.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert not [pid for pid in children if _alive(pid)], "a serving process outlived it"
    # The periodic jobs run in one process: one says it is listening and started them.
    assert log.read_text().count("geo_api_listening") == 1


def test_a_serving_process_that_dies_takes_the_command_down_non_zero(
    stopped_primary: PrimarySite, tmp_path: Path,
) -> None:
    log = tmp_path / "serve.log"
    with _serving(stopped_primary, log, 2) as proc:
        wait_for(lambda: len(_servers(proc.pid)) == 2, "two serving processes")
        first, second = _servers(proc.pid)
        os.kill(first, signal.SIGKILL)
        assert proc.wait(timeout=90) != 0
    wait_for(lambda: not _alive(second), "the other serving process to stop")
    assert "exited on its own" in log.read_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose; ps shows it as <defunct>.
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True,
                           text=True, check=False).stdout.strip()
    return bool(state) and not state.startswith("Z")


def hang_on_stop(settings: Settings, sock: socket.socket, index: int, processes: int) -> None:
    """A serving function whose graceful stop never ends (it ignores SIGTERM), as a
    lifespan shutdown stuck on a vanished database would; it writes its pid first."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(os.environ["HANG_PID_FILE"]).write_text(str(os.getpid()))
    while True:
        time.sleep(1)


_SUPERVISE_HANGING = """
import socket, sys
from pathlib import Path
from geo_sync.cli.serving import supervise
from tests.primary.test_serve_processes import hang_on_stop
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.bind(("127.0.0.1", 0))
sock.set_inheritable(True)
supervise(Path(sys.argv[1]), sock, 1, hang_on_stop, "hanging serve")
"""


def test_a_serving_process_whose_supervisor_is_killed_ends_even_if_its_stop_hangs(
    stopped_primary: PrimarySite, tmp_path: Path,
) -> None:
    pid_file, log = tmp_path / "child.pid", tmp_path / "supervisor.log"
    env = {**os.environ, "HANG_PID_FILE": str(pid_file), "GEO_SYNC_ORPHAN_GRACE_SECONDS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    supervisor = subprocess.Popen(
        [sys.executable, "-c", _SUPERVISE_HANGING, str(stopped_primary.config)], env=env,
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(pid_file.exists, "the serving process to start", timeout=90)
        child = int(pid_file.read_text())
        supervisor.kill()  # SIGKILL: the supervisor can neither stop nor wait for it
        supervisor.wait()
        wait_for(lambda: not _alive(child), "the orphaned serving process to end")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(supervisor.pid, signal.SIGKILL)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines if line["event"] in (
        "supervisor_gone", "graceful_stop_hung")] == ["supervisor_gone", "graceful_stop_hung"]


def _request_read_by_server(port: int) -> bool:
    """A connection to ``port`` is established and the server has read all it was
    sent (its receive queue is empty): the request is in the server's hands."""
    listing = subprocess.run(["ss", "-Htn", "state", "established", f"sport = :{port}"],
                             capture_output=True, text=True, check=True).stdout
    return any(line.split()[0] == "0" for line in listing.splitlines())


def test_sigterm_answers_an_open_long_poll_instead_of_cancelling_it(
    stopped_primary: PrimarySite, tmp_path: Path,
) -> None:
    log = tmp_path / "serve.log"
    port = int(stopped_primary.url.rsplit(":", 1)[1])
    with _serving(stopped_primary, log, 1) as proc:
        with httpx.Client(base_url=stopped_primary.api, timeout=120) as client:
            head = client.get("/events/head", headers=stopped_primary.headers()).json()
        answers: list[httpx.Response] = []

        def long_poll() -> None:
            answers.append(httpx.get(f"{stopped_primary.api}/events",
                                     params={"cursor": head["cursor"], "wait": 60},
                                     headers=stopped_primary.headers(), timeout=120))

        poller = threading.Thread(target=long_poll)
        poller.start()
        wait_for(lambda: _request_read_by_server(port), "the long poll to reach the server")
        proc.send_signal(signal.SIGTERM)
        poller.join(timeout=120)
        # One process is uvicorn itself, which re-raises the SIGTERM once it has stopped.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert [(a.status_code, a.json()["events"]) for a in answers] == [(200, [])]
    assert "Exception in ASGI application" not in log.read_text()
