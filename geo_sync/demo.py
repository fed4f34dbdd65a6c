"""`geo-sync demo`: an embedded primary and secondary, a CI workload driven through
them, a strict comparison, and at the end what a CI runner does at the secondary:
a clone and a download from the mirror server. No services needed."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine

from geo_sync.compare import compare_storage
from geo_sync.db import make_engine, write_transaction
from geo_sync.failover.drill import drill as run_drill
from geo_sync.failover.drill import write_report as write_drill_report
from geo_sync.primary.api import create_app
from geo_sync.primary.publish import Change, publish
from geo_sync.primary.secondaries import add_secondary
from geo_sync.primary.site import init_primary
from geo_sync.secondary.daemon import SecondaryDaemon
from geo_sync.secondary.mirror.app import create_app as create_mirror_app
from geo_sync.secondary.site import init_secondary
from geo_sync.secondary.status import secondary_status
from geo_sync.settings import PrimarySettings, SecondarySettings, load_settings
from geo_sync.tracking.readers import add_reader
from geo_sync.tracking.states import SyncState
from geo_sync.workload import ARTIFACT_DIR, Workload

ROUNDS = 3
CONVERGE_TIMEOUT = 45.0
SECONDARY_TUNING = {"lease_seconds": 5.0, "poll_wait_seconds": 5, "worker_threads": 4,
                    "retry_cap_seconds": 2.0, "requeue_after_seconds": 5.0}

Report = Callable[[str, dict[str, Any]], None]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DemoSites:
    primary: PrimarySettings
    primary_engine: Engine
    secondary: SecondarySettings
    secondary_engine: Engine


@contextmanager
def _in_thread(app: Any, port: int, what: str) -> Iterator[None]:
    """Serve ``app`` on 127.0.0.1:``port`` from a uvicorn server in a thread."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False))
    thread = threading.Thread(target=server.run, name=what, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the {what} could not listen on port {port}")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def _serve(settings: PrimarySettings, engine: Engine) -> Iterator[None]:
    with _in_thread(create_app(settings, engine), settings.listen_port, "Geo API"):
        yield


@contextmanager
def _run(daemon: SecondaryDaemon) -> Iterator[None]:
    thread = threading.Thread(target=daemon.run, name="geo-secondary", daemon=True)
    thread.start()
    try:
        yield
    finally:
        daemon.stop()
        thread.join(timeout=30)


def _converged(sites: DemoSites) -> tuple[bool, dict[str, Any], list[str]]:
    status = secondary_status(sites.secondary_engine, None, sites.secondary.name)
    busy = any(counts[state] for counts in status["types"].values()
               for state in (SyncState.PENDING, SyncState.STARTED, SyncState.FAILED))
    if busy:
        return False, status, []
    differences = compare_storage(sites.primary.storage_root, sites.secondary.mirror_root)
    return not differences, status, differences


def wait_converged(sites: DemoSites, report: Report, stage: str) -> list[str]:
    """Poll until the mirror equals the primary; return the differences left at timeout."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    differences: list[str] = ["not compared yet"]
    while time.monotonic() < deadline:
        done, status, differences = _converged(sites)
        report(stage, status)
        if done:
            return []
        time.sleep(0.2)
    return differences or ["registry still has pending, started or failed items"]


def _verified(sites: DemoSites) -> tuple[bool, dict[str, Any]]:
    status = secondary_status(sites.secondary_engine, None, sites.secondary.name)
    done = all(counts["verified"] + counts["verification_failed"] >= counts["synced"]
               for counts in status["types"].values())
    return done, status


def wait_verified(sites: DemoSites, report: Report) -> None:
    """Give verification (which follows the primary's checksums by a few seconds) a
    bounded time to cover every copy, so the final report shows it done."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while time.monotonic() < deadline:
        done, status = _verified(sites)
        report("verifying the copies", status)
        if done:
            return
        time.sleep(0.2)


@contextmanager
def _serve_mirror(settings: SecondarySettings, engine: Engine) -> Iterator[str]:
    """The mirror server (`secondary serve`) in a thread; yields its base URL."""
    port = free_port()
    with _in_thread(create_mirror_app(settings, engine), port, "mirror server"):
        yield f"http://127.0.0.1:{port}"


def mirror_round_trip(sites: DemoSites, workload: Workload, scratch: Path,
                      report: Report) -> list[str]:
    """What a CI runner at the secondary does: clone a repository and download an
    artifact from the mirror server with a reader token. The differences found (the
    copy not from the mirror, or not equal to the primary's)."""
    with write_transaction(sites.secondary_engine) as conn:
        token = add_reader(conn, "demo-runner")
    problems: list[str] = []
    with _serve_mirror(sites.secondary, sites.secondary_engine) as url:
        repo = workload.repositories[0]
        clone = scratch / "runner-clone"
        header = f"http.extraHeader=Authorization: Bearer {token}"
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
        cloned = subprocess.run(["git", "-c", header, "clone", "-q", f"{url}/git/{repo}",
                                 str(clone)], capture_output=True, text=True, env=env,
                                check=False, timeout=120)
        if cloned.returncode != 0:
            problems.append(f"git clone {url}/git/{repo} failed: {cloned.stderr.strip()}")
        report(f"mirror server {url}: git clone /git/{repo}", {})
        kind = ARTIFACT_DIR
        artifact = workload.artifacts[0]
        response = httpx.get(f"{url}/{kind}/{artifact}", timeout=60,
                             headers={"Authorization": f"Bearer {token}"})
        expected = (sites.primary.storage_root / kind / artifact).read_bytes()
        served_by = response.headers.get("x-geo-served-by")
        if response.status_code != 200 or response.content != expected:
            problems.append(f"GET /{kind}/{artifact}: {response.status_code}, "
                            f"{len(response.content)} bytes, not the primary's")
        elif served_by != "mirror":
            problems.append(f"GET /{kind}/{artifact} was served by {served_by}, "
                            "not the mirror")
        report(f"mirror server {url}: downloaded /{kind}/{artifact} "
               f"({len(response.content)} bytes, served by {served_by})", {})
    return problems


def run_demo(root: Path, report: Report, *, drill: bool = False
             ) -> tuple[list[str], dict[str, Any], int]:
    """Build both sites under ``root``, drive the workload, return (differences, status,
    number of changes published). With ``drill``, a planned failover drill runs on the
    secondary at the end; its report goes to ``report`` as ``{"drill": ...}``."""
    config = init_primary(root / "primary", listen_port=free_port())
    primary = load_settings(config).require_primary()
    primary_engine = make_engine(primary.database_url)
    with write_transaction(primary_engine) as conn:
        secret = add_secondary(conn, "demo-secondary")

    def publish_change(change: Change) -> None:
        with write_transaction(primary_engine) as conn:
            publish(conn, change)

    workload = Workload(primary.storage_root, root / "scratch", publish_change)
    workload.initial()
    secondary_config = init_secondary(
        root / "secondary", primary_url=f"http://127.0.0.1:{primary.listen_port}",
        name="demo-secondary", secret=secret, extra=SECONDARY_TUNING)
    secondary = load_settings(secondary_config).require_secondary()
    sites = DemoSites(primary, primary_engine, secondary, make_engine(secondary.database_url))
    try:
        with _serve(primary, primary_engine), _run(SecondaryDaemon(secondary)):
            differences = wait_converged(sites, report, "initial sync (backfill)")
            if not differences:
                for number in range(1, ROUNDS + 1):
                    workload.round(number)
                    report(f"workload round {number}", {})
                differences = wait_converged(sites, report, "replicating the workload")
            if not differences:
                wait_verified(sites, report)
                differences = mirror_round_trip(sites, workload, root / "scratch", report)
            if drill and not differences:
                result = run_drill(secondary, secondary_config.parent, planned=True,
                                   timeout=CONVERGE_TIMEOUT)
                kept = write_drill_report(result, secondary_config.parent)
                report(f"failover drill (planned: maintenance on, catch up, off); report {kept}",
                       {"drill": result.to_json()})
            final = secondary_status(sites.secondary_engine, None, secondary.name)
    finally:
        sites.secondary_engine.dispose()
        primary_engine.dispose()
    return differences, final, workload.changes
