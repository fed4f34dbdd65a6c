"""`geo-sync status` answered by the running `secondary run` (geo_sync.local_status):
the same report the command computes, without the command loading SQLAlchemy, pydantic,
psycopg or httpx; and computed by the command itself whenever the daemon cannot answer
for it (killed, stale socket, other GEO_SYNC_* overrides), whatever arrives on the
socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo_sync.cli.check import check_answer
from geo_sync.cli.context import CliContext
from geo_sync.local_status import (
    MAX_REQUEST,
    REPLY_TIMEOUT,
    StatusSocket,
    ask,
    runtime_dir,
    socket_name,
)
from tests.cli.test_startup_imports import NOT_FOR_STATUS, _packages, _run
from tests.deployment import Deployment, deployment_for, wait_for
from tests.sites import GEO_SYNC, status_of

# What the command needs only when it computes the report itself.
NOT_WHEN_ANSWERED = NOT_FOR_STATUS | {"sqlalchemy", "psycopg", "pydantic",
                                      "pydantic_settings", "httpx"}


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Deployment]:
    with deployment_for("embedded", tmp_path) as deployment:
        deployment.start_run()
        wait_for(lambda: ask(deployment.secondary.config) is not None,
                 "`secondary run` answering status on its socket")
        yield deployment


def _status(config: Path, env: dict[str, str] | None = None
            ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], set[str]]:
    done, modules = _run("--config", str(config), "status", "--json", env=env)
    return done, json.loads(done.stdout), modules


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    """What does not move between two reports a moment apart."""
    return {"role": report.get("role"), "types": sorted(report["types"]),
            "verdict": report["verdict"]["verdict"],
            "selection": report["selection"]}


def test_the_daemon_answers_status_with_the_report_the_command_computes(
        running: Deployment) -> None:
    done, report, modules = _status(running.secondary.config)
    assert report["answered_by"] == {"process": "secondary run",
                                     "pid": running.processes["run"].pid}
    assert not _packages(modules) & NOT_WHEN_ANSWERED, _packages(modules) & NOT_WHEN_ANSWERED
    computed = status_of(running.secondary.config)
    assert "answered_by" not in computed
    assert _comparable(report) == _comparable(computed)
    assert done.returncode == report["verdict"]["exit_code"]
    # The people's view renders the same report.
    text = subprocess.run([GEO_SYNC, "--config", str(running.secondary.config), "status"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert text.returncode == done.returncode
    assert report["verdict"]["verdict"] in text.stdout


def test_the_daemon_answers_check_with_the_checks_the_command_runs(
        running: Deployment) -> None:
    done, modules = _run("--config", str(running.secondary.config), "check", "--json")
    document = json.loads(done.stdout)
    assert document.pop("answered_by") == {"process": "secondary run",
                                           "pid": running.processes["run"].pid}
    assert not _packages(modules) & NOT_WHEN_ANSWERED, _packages(modules) & NOT_WHEN_ANSWERED
    computed = check_answer(CliContext(str(running.secondary.config),
                                       configures_logging=False))
    assert {c["check"] for c in document["checks"]} == {
        c["check"] for c in computed["document"]["checks"]}
    assert document["role"] == "secondary" and done.returncode == computed["exit_code"]
    lines = subprocess.run([GEO_SYNC, "--config", str(running.secondary.config), "check"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert lines.returncode == done.returncode
    assert lines.stdout.splitlines()[-1] == computed["lines"][-1]


def test_a_command_with_other_overrides_computes_the_report_itself(
        running: Deployment) -> None:
    env = {**os.environ, "GEO_SYNC_LOG__LEVEL": "debug"}
    done, report, modules = _status(running.secondary.config, env=env)
    assert "answered_by" not in report
    assert "sqlalchemy" in _packages(modules)
    assert done.returncode == report["verdict"]["exit_code"]


def test_a_stopped_daemon_is_not_waited_for(running: Deployment) -> None:
    daemon = running.processes["run"]
    os.kill(daemon.pid, signal.SIGSTOP)  # the kernel still accepts its connections
    try:
        # Bounded below the wait for an answer: the command must not wait for one.
        done = subprocess.run([GEO_SYNC, "--config", str(running.secondary.config), "status",
                               "--json"], capture_output=True, text=True, check=False,
                              timeout=REPLY_TIMEOUT - 5)
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    report = json.loads(done.stdout)
    assert "answered_by" not in report and report["types"]


def test_after_the_daemon_is_killed_status_is_computed_and_a_new_daemon_takes_the_socket(
        running: Deployment) -> None:
    config = running.secondary.config
    directory = runtime_dir(create=False)
    assert directory is not None
    path = directory / socket_name(config)
    running.kill("run", signal.SIGKILL)
    assert path.exists(), "a killed daemon leaves its socket behind"
    _, report, _ = _status(config)
    assert "answered_by" not in report and report["types"]
    restarted = running.start_run()
    wait_for(lambda: (ask(config) or {}).get("report", {}).get("answered_by", {}).get("pid")
             == restarted.pid, "the restarted `secondary run` answering on the socket")
    running.kill("run", signal.SIGTERM)
    assert not path.exists(), "a daemon that stops removes its socket"


@pytest.fixture(scope="module")
def answering(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[int]]]:
    """A status socket whose answer counts its calls (the daemon's part, in-process)."""
    config = tmp_path_factory.mktemp("status") / "config.toml"
    calls: list[int] = []

    def answer(command: str) -> dict[str, Any]:
        calls.append(1)
        return {"report": {"calls": len(calls), "command": command}, "exit_code": 0}

    status = StatusSocket(config, answer)
    threads: list[threading.Thread] = []
    assert status.start(lambda name, target: threads.append(_spawn(name, target)))
    yield config, calls
    status.close()
    assert not any(thread.is_alive() for thread in threads)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3 * MAX_REQUEST))
def test_whatever_arrives_on_the_socket_it_answers_only_a_status_request(
        answering: tuple[Path, list[int]], garbage: bytes) -> None:
    config, calls = answering
    directory = runtime_dir(create=False)
    assert directory is not None
    before = len(calls)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(str(directory / socket_name(config)))
        conn.sendall(garbage)
        conn.shutdown(socket.SHUT_WR)
        reply = bytearray()
        while chunk := conn.recv(4096):
            reply += chunk
    assert "error" in json.loads(reply)
    assert len(calls) == before  # nothing computed for it
    answered = ask(config)  # and it still answers the real requests
    assert answered is not None and answered["report"]["calls"] == len(calls) == before + 1
    checked = ask(config, "check")
    assert checked is not None and checked["report"]["command"] == "check"


def _spawn(name: str, target: Any) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def test_only_a_private_runtime_directory_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    too_long = tmp_path / ("x" * 100)
    (too_long / "geo-sync").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(too_long))
    assert runtime_dir(create=True) != too_long / "geo-sync", "no socket path fits there"
    short = Path(tempfile.mkdtemp(prefix="xdg-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short))
    try:
        _private_directory_only(short, tmp_path, monkeypatch)
    finally:
        shutil.rmtree(short)


def _private_directory_only(runtime: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    shared = runtime / "geo-sync"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)  # whatever the umask: others may enter
    fallback = runtime_dir(create=True)
    assert fallback is not None and fallback != shared
    shared.chmod(0o700)
    assert runtime_dir(create=True) == shared
    config = tmp_path / "config.toml"
    status = StatusSocket(config, lambda _: {"report": {"here": True}, "exit_code": 0})
    assert status.start(_spawn)
    try:
        assert (shared / socket_name(config)).exists()
        assert ask(config) == {"report": {"here": True}, "exit_code": 0}
        monkeypatch.delenv("XDG_RUNTIME_DIR")  # a command whose environment lacks it
        assert ask(config) is None
    finally:
        status.close()
    assert not (shared / socket_name(config)).exists()


def test_a_client_that_sends_nothing_does_not_stop_the_answers(
        answering: tuple[Path, list[int]]) -> None:
    config, calls = answering
    directory = runtime_dir(create=False)
    assert directory is not None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(directory / socket_name(config)))
        answered = ask(config)  # while the silent one holds its connection open
        assert answered is not None and answered["report"]["calls"] == len(calls)
        silent.settimeout(60)
        assert silent.recv(4096) == b"", "a silent client is dropped"
