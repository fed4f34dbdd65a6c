"""A whole deployment for end-to-end tests: a served primary, a secondary, and its
processes (`secondary run`, `geo-sync worker`) started and killed for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, select

from geo_sync.db import write_transaction
from geo_sync.primary.publish import Change, publish
from geo_sync.tracking.models import CursorRow
from geo_sync.workload import Workload
from replicators.type_map import REPLICATORS
from tests.compare import differences, temp_files
from tests.services import REDIS_URL, service_missing, temporary_database
from tests.sites import GEO_SYNC, PrimarySite, SecondarySite, primary_site, secondary_site
from tests.tls import TestCA

TUNING = {
    "lease_seconds": 3.0, "cursor_lease_seconds": 3.0, "poll_wait_seconds": 5,
    "requeue_after_seconds": 5.0, "retry_cap_seconds": 2.0, "missing_retry_cap_seconds": 3.0,
    "scheduler_interval_seconds": 0.5, "worker_threads": 4,
}
CONVERGE_TIMEOUT = 150.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until true; fail naming ``what`` (a bound, not a speed check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Deployment:
    mode: str
    primary: PrimarySite
    secondary: SecondarySite
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.mode == "production"

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen([GEO_SYNC, "--config", str(self.secondary.config), *args],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = proc
        return proc

    def start_run(self, name: str = "run") -> subprocess.Popen[bytes]:
        return self._spawn(name, "secondary", "run")

    def start_workers(self, name: str = "workers") -> None:
        """Production: separate worker processes. Embedded: workers live in `run`."""
        if self.production:
            self._spawn(name, "worker", "--processes", "2", "--threads", "4")

    def start(self) -> None:
        self.start_run()
        self.start_workers()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the process group; a SIGTERM not obeyed in 30 s becomes a SIGKILL."""
        proc = self.processes.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                raise AssertionError(f"{name} ignored {signal.Signals(sig).name} for 30 s"
                                     ) from None

    def kill_workers(self) -> None:
        """Kill whatever runs the workers, mid-whatever-it-is-doing."""
        self.kill("workers" if self.production else "run")

    def restart_workers(self) -> None:
        if self.production:
            self.start_workers()
        else:
            self.start_run()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM)

    def publish(self, change: Change) -> None:
        with write_transaction(self.primary.engine) as conn:
            publish(conn, change)

    def workload(self, scratch: Path) -> Workload:
        return Workload(self.primary.settings.storage_root, scratch, self.publish)

    def status(self) -> dict[str, Any]:
        return self.secondary.status()

    def registry_busy(self) -> int:
        with self.secondary.engine.connect() as conn:
            return sum(conn.execute(select(func.count()).where(
                r.registry_table.state != "synced")).scalar_one() for r in REPLICATORS.values())

    def caught_up(self) -> bool:
        with self.secondary.engine.connect() as conn:
            cursor = conn.execute(select(CursorRow.cursor)).scalar()
        if cursor is None:
            return False
        with self.primary.client() as client:
            page = client.get("/events", params={"cursor": cursor, "limit": 1},
                              headers=self.primary.headers()).json()
        return not page.get("events")

    def converged(self) -> bool:
        return (self.caught_up() and self.registry_busy() == 0
                and not differences(self.primary.settings.storage_root,
                                    self.secondary.settings.mirror_root))

    def wait_converged(self) -> None:
        try:
            wait_for(self.converged, "the mirror to equal the primary", CONVERGE_TIMEOUT)
        except AssertionError:
            left = differences(self.primary.settings.storage_root,
                               self.secondary.settings.mirror_root)
            status = self.status()
            raise AssertionError(
                f"not converged: {left[:10]}; status: {json.dumps(status.get('types', status))}; "
                f"logs in {self.logs}"
            ) from None

    def temp_files(self) -> list[Path]:
        return temp_files(self.secondary.settings.mirror_root)


@contextmanager
def deployment_for(mode: str, tmp_path: Path, tls: TestCA | None = None,
                   **tuning: object) -> Iterator[Deployment]:
    """A primary and a secondary in ``mode``: "production" (PostgreSQL, Redis, separate
    worker processes) or "embedded" (SQLite, in-process broker); with ``tls``, the
    primary serves HTTPS with that CA's certificate and the secondary trusts the CA."""
    logs = tmp_path / "logs"
    logs.mkdir()
    settings = {**TUNING, **tuning}
    if mode == "embedded":
        with primary_site(tmp_path / "primary", None, tls=tls) as primary:
            secondary = secondary_site(tmp_path / "secondary", primary, None, **settings)
            deployment = Deployment("embedded", primary, secondary, logs)
            try:
                yield deployment
            finally:
                deployment.stop_all()
                secondary.engine.dispose()
        return
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        service_missing("Redis", exc)
    queue = unique_queue()
    with temporary_database() as primary_url, temporary_database("geo_tracking") as url, \
            primary_site(tmp_path / "primary", primary_url, tls=tls) as primary:
        secondary = secondary_site(tmp_path / "secondary", primary, url, broker_url=REDIS_URL,
                                   queue_name=queue, **settings)
        deployment = Deployment("production", primary, secondary, logs)
        try:
            yield deployment
        finally:
            deployment.stop_all()
            secondary.engine.dispose()
            flush_queue(queue)


def unique_queue() -> str:
    return f"geo_test_{uuid.uuid4().hex[:10]}"


def flush_queue(queue: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{queue}*"):
        client.delete(key)
    client.close()
