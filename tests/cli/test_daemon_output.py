"""Daemons write nothing but JSON lines (their own, uvicorn's, dramatiq's, warnings,
startup errors), carry readable process names, and a busy port is one clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.deployment import deployment_for, wait_for
from tests.sites import GEO_SYNC, PrimarySite, wait_for_port


def _json_lines(text: str) -> list[dict[str, object]]:
    """Every non-empty line parsed as one JSON object (fails the test on a plain line)."""
    parsed = []
    for line in text.splitlines():
        if line.strip():
            try:
                parsed.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not a JSON line: {line!r}")
    return parsed


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def test_serve_on_a_busy_port_fails_at_once_with_a_hint_and_says_no_started(
        primary: PrimarySite) -> None:
    port = primary.url.rsplit(":", 1)[1]
    result = subprocess.run(
        [GEO_SYNC, "--config", str(primary.config), "primary", "serve"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "GEO_SYNC_PRIMARY__LISTEN_PORT": port})
    assert result.returncode == 1
    lines = _json_lines(result.stderr)
    errors = [line for line in lines if line.get("event") == "cannot_start"]
    assert len(errors) == 1
    assert "Address already in use" in str(errors[0]["error"])
    assert "listen_port" in str(errors[0]["hint"])
    assert not any("start" in str(line.get("event")).lower() and line is not errors[0]
                   for line in lines), lines


def test_a_busy_port_on_a_terminal_is_one_plain_line(primary: PrimarySite) -> None:
    port = primary.url.rsplit(":", 1)[1]
    result = subprocess.run(
        ["script", "-qec", f"{GEO_SYNC} --config {primary.config} primary serve",
         "/dev/null"], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "GEO_SYNC_PRIMARY__LISTEN_PORT": port})
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "hint:" in errors[0] and "Traceback" not in result.stdout


def test_serve_writes_only_json_and_names_its_process(primary: PrimarySite,
                                                      tmp_path: Path) -> None:
    primary.stop()
    log_path = tmp_path / "serve.log"
    port = int(primary.url.rsplit(":", 1)[1])
    with log_path.open("wb") as log:
        primary.process = subprocess.Popen(
            [GEO_SYNC, "--config", str(primary.config), "primary", "serve"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "GEO_SYNC_PRIMARY__LISTEN_PORT": str(port)})
        wait_for_port(port, primary.process)
        assert _cmdline(primary.process.pid).startswith("geo-sync primary serve")
        httpx.get(f"{primary.api}/status", headers={"Authorization": "Bearer nonsense"},
                  timeout=90)
        httpx.get(f"{primary.url}/not-an-endpoint", timeout=90)
        # The port listens before the serving process that logs this line has started
        # (two processes by default, and the other one may answer first).
        wait_for(lambda: "geo_api_listening" in log_path.read_text(),
                 "the serving process to log where it listens", 90)
        primary.stop()
    lines = _json_lines(log_path.read_text())
    components = {line.get("component") for line in lines}
    assert "uvicorn.error" in components, "uvicorn's own lines were not captured"
    assert any(line.get("event") == "geo_api_listening" for line in lines)


def _python_with_json_logging(*lines: str) -> tuple[int, list[dict[str, object]]]:
    """Run ``lines`` in a fresh interpreter after configure_logging('info', 'json');
    its exit status and the JSON lines of its stderr."""
    program = "\n".join(["from geo_sync.logging import configure_logging",
                         "configure_logging('info', 'json')", *lines])
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=60, check=False)
    return result.returncode, _json_lines(result.stderr)


def test_warnings_and_uncaught_exceptions_become_json_lines() -> None:
    status, lines = _python_with_json_logging(
        "import warnings, threading",
        "warnings.warn('key too short for HS256')",
        "t = threading.Thread(target=lambda: 1 / 0, name='loop'); t.start(); t.join()",
        "raise RuntimeError('boom')")
    assert status == 1
    assert any("key too short" in str(line.get("event")) for line in lines)
    uncaught = [line for line in lines if line.get("event") == "uncaught_exception"]
    assert len(uncaught) == 2
    assert "ZeroDivisionError" in str(uncaught[0]["exception"])
    assert "RuntimeError: boom" in str(uncaught[1]["exception"])


def test_a_process_whose_main_thread_dies_exits_though_other_threads_run() -> None:
    # As `secondary run`: a non-daemon thread that never ends, stop signals blocked.
    status, lines = _python_with_json_logging(
        "import threading",
        "from geo_sync.signals import block_stop_signals",
        "block_stop_signals()",
        "threading.Thread(target=threading.Event().wait, name='loop').start()",
        "raise RuntimeError('main thread died')")
    assert status == 1
    [uncaught] = [line for line in lines if line.get("event") == "uncaught_exception"]
    assert "main thread died" in str(uncaught["exception"])


@pytest.mark.parametrize("mode", ["embedded", "production"])
def test_secondary_processes_write_only_json_and_carry_readable_names(
        mode: str, tmp_path: Path) -> None:
    with deployment_for(mode, tmp_path) as deployment:
        deployment.workload(tmp_path / "scratch").initial(repositories=1, artifacts=2, logs=1)
        deployment.start()
        deployment.wait_converged()
        run = deployment.processes["run"]
        assert _cmdline(run.pid) == "geo-sync secondary run s1"
        if deployment.production:
            supervisor = deployment.processes["workers"].pid

            def children() -> list[int]:
                found = []
                for entry in Path("/proc").iterdir():
                    if entry.name.isdigit():
                        try:
                            stat = (entry / "stat").read_text()
                        except OSError:
                            continue
                        if int(stat.rsplit(")", 1)[1].split()[1]) == supervisor:
                            found.append(int(entry.name))
                return found

            wait_for(lambda: len([p for p in children()
                                  if _cmdline(p).startswith("geo-sync worker s1")]) == 2,
                     "two worker processes named geo-sync worker s1", 60)
            assert _cmdline(supervisor).startswith("geo-sync worker s1 (supervisor")
        deployment.stop_all()
    for log in (tmp_path / "logs").iterdir():
        assert _json_lines(log.read_text()), f"{log.name} is empty"

