"""One fault-matrix cell's world: a served primary, a Toxiproxy proxy named ``geo_api``
in front of it (the secondary's primary_url), a secondary on PostgreSQL and a private
Redis with `secondary run` and `geo-sync worker` processes, a CI workload, and a
checker sampling the mirror's final paths the whole time."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from toxiproxy.api import APIConsumer
from toxiproxy.proxy import Proxy

from geo_sync.db import make_engine
from geo_sync.primary.publish import Change
from geo_sync.secondary.site import init_secondary
from geo_sync.settings import load_settings
from geo_sync.workload import Workload
from tests.compare import TEMP
from tests.deployment import TUNING, Deployment, wait_for
from tests.faults.toxiproxy_api import ToxiproxyApi
from tests.services import (
    PrivateService,
    private_postgres,
    private_redis,
    temporary_database,
)
from tests.sites import (
    GEO_SYNC,
    PRIMARY_TEST_ENV,
    PrimarySite,
    SecondarySite,
    primary_site,
    wait_for_http,
    wait_for_port,
)

PROXY = "geo_api"  # the same name as config/compose/toxiproxy.json
# Short leases and intervals so a cell converges in seconds; http_timeout short so a
# stalled link is noticed (the timeout cell stalls longer than this).
FAULT_TUNING: dict[str, object] = {
    **TUNING, "http_timeout_seconds": 4.0, "worker_threads": 4,
}
# What each cell's status showed and how long it took to converge, by test id; the
# conftest hook writes it out for bench/fault_matrix.py (docs/fault-matrix.md).
CELL_NOTES: dict[str, dict[str, Any]] = {}


def _note(**values: Any) -> None:
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    CELL_NOTES.setdefault(test, {}).update(values)


class FaultDeployment(Deployment):
    """A production deployment whose worker is one process (2 cores, five engineers)."""

    def start_workers(self, name: str = "workers") -> None:
        self._spawn(name, "worker", "--processes", "1", "--threads", "4")

    def stop_all(self) -> None:
        """Teardown: the cell's verdict is in, so SIGKILL (a graceful stop costs seconds
        per cell; the double-SIGTERM cell tests graceful stops)."""
        for name in list(self.processes):
            self.kill(name, signal.SIGKILL)

    def alive(self) -> list[str]:
        """Names of the daemons that have exited (empty when all still run)."""
        dead = [n for n, p in self.processes.items() if p.poll() is not None]
        if self.primary.process is not None and self.primary.process.poll() is not None:
            dead.append("primary serve")
        return dead


@dataclass
class Checker:
    """Samples every final path of the mirror while the cell runs; each copy seen must be
    one the primary published (artifacts: a published checksum; logs: a published size
    and a prefix of the primary's bytes; repositories: a whole bare repository)."""

    mirror: Path
    primary: Path
    published: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    seen: dict[tuple[str, str, int], str] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _cache: dict[tuple[str, int, int, int], str] = field(default_factory=dict)

    def record(self, change: Change) -> None:
        key = (change.replicable_type, change.path)
        if change.checksum:
            self.published.setdefault(key, set()).add(change.checksum)
        if change.size is not None:
            self.published.setdefault(key, set()).add(f"size:{change.size}")

    def start(self) -> None:
        threading.Thread(target=self._loop, daemon=True, name="checker").start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(0.15):
            # A file renamed or deleted under the walk: the next sample sees it.
            with suppress(OSError):
                self.sample()

    def sample(self) -> None:
        self.samples += 1
        for kind, change_type in (("artifacts", "artifact"), ("job_logs", "job_log")):
            root = self.mirror / kind
            for path in root.rglob("*"):
                if TEMP in path.name or TEMP in str(path.relative_to(root)) or \
                        not path.is_file():
                    continue
                stat = path.stat()
                key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
                if key not in self._cache:
                    self._cache[key] = hashlib.sha256(path.read_bytes()).hexdigest()
                rel = path.relative_to(root).as_posix()
                self.seen[(change_type, rel, stat.st_size)] = self._cache[key]
        for head in (self.mirror / "repositories").rglob("HEAD"):
            repo = head.parent
            if repo.name.endswith(".git") and TEMP not in str(repo) and not (
                    (repo / "objects").is_dir() and (repo / "refs").is_dir()):
                self.broken.append(f"repository {repo} at its final path is incomplete")

    def violations(self) -> list[str]:
        """Every copy seen that the primary never published."""
        found = list(self.broken)
        for (kind, rel, size), digest in self.seen.items():
            published = self.published.get((kind, rel), set())
            if kind == "artifact" and digest not in published:
                found.append(f"artifact {rel}: a copy ({size} bytes) the primary never had")
            if kind == "job_log":
                source = self.primary / "job_logs" / rel
                prefix = source.read_bytes()[:size] if source.exists() else b""
                if f"size:{size}" not in published or \
                        hashlib.sha256(prefix).hexdigest() != digest:
                    found.append(f"job log {rel}: a copy of {size} bytes that is no version")
        return found


@dataclass
class Rig:
    deployment: FaultDeployment
    api: ToxiproxyApi
    proxy: Proxy
    redis: PrivateService
    checker: Checker
    workload: Workload
    tracking_pg: PrivateService | None = None
    primary_pg: PrivateService | None = None

    @property
    def primary(self) -> PrimarySite:
        return self.deployment.primary

    @property
    def secondary(self) -> SecondarySite:
        return self.deployment.secondary

    def add_toxic(self, **toxic: Any) -> str:
        self.proxy.add_toxic(**toxic)
        return str(toxic.get("name") or f"{toxic['type']}_{toxic.get('stream', 'downstream')}")

    def remove_toxics(self) -> None:
        for name in self.proxy.toxics():
            self.proxy.destroy_toxic(name)

    def status(self) -> dict[str, Any]:
        """`geo-sync status --json`, or {"error": ...} when it cannot answer."""
        return self.secondary.status()

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], what: str,
                    timeout: float = 90.0, more: Callable[[], None] | None = None
                    ) -> dict[str, Any]:
        """Poll status until ``predicate`` holds; return that status. ``more``: for work
        in flight, which a slow `status` (seconds to start on a loaded machine) can miss
        when it finishes first: add more of it, under the same fault, after each miss."""
        seen: list[dict[str, Any]] = []

        def shown() -> bool:
            seen.append(self.status())
            if predicate(seen[-1]):
                return True
            if more is not None:
                more()
            return False

        try:
            wait_for(shown, f"status to show {what}", timeout)
        except AssertionError:
            raise AssertionError(f"status never showed {what}; last: {seen[-1:]}") from None
        _note(shown=what)
        return seen[-1]

    def restart_primary(self, extra_env: dict[str, str] | None = None) -> None:
        self.primary.stop()
        start_primary(self.primary, extra_env)

    def converge(self) -> float:
        """Wait for the mirror to equal the primary and no temp file to be left; assert
        every daemon still runs and the checker saw nothing wrong; return the seconds."""
        start = time.monotonic()
        self.deployment.wait_converged()
        wait_for(lambda: not self.deployment.temp_files(), "no temp files left", 60)
        took = time.monotonic() - start
        self.checker.sample()
        self.checker.stop()
        assert not self.deployment.alive(), f"daemons died: {self.deployment.alive()}"
        assert self.checker.samples > 3, "the checker did not sample during the cell"
        assert self.checker.violations() == [], self.checker.violations()
        _note(converge_seconds=round(took, 1))
        return took


def start_primary(site: PrimarySite, extra_env: dict[str, str] | None = None) -> None:
    port = int(site.url.rsplit(":", 1)[1])
    env = {**PRIMARY_TEST_ENV, **os.environ, "GEO_SYNC_PRIMARY__LISTEN_PORT": str(port),
           **(extra_env or {})}
    # As many serving processes as the site started with (one): the default, a supervisor
    # and a child per core, cost the cell's two cores three interpreters per restart, and
    # kill_primary's SIGKILL would reach only the supervisor.
    site.process = subprocess.Popen(
        [GEO_SYNC, "--config", str(site.config), "primary", "serve",
         "--processes", str(site.processes)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, site.process)
    wait_for_http(f"{site.api}/openapi.json", site.process, verify=site.verify)


def kill_primary(site: PrimarySite) -> None:
    if site.process is not None and site.process.poll() is None:
        site.process.send_signal(signal.SIGKILL)
        site.process.wait()


def ensure_proxy(api: ToxiproxyApi, upstream: str) -> Proxy:
    """The ``geo_api`` proxy pointed at ``upstream``: created on our server, re-pointed on
    a real Toxiproxy that already has it (docker-compose's), keeping its listen address."""
    client = api.client()
    client.reset()
    existing = client.get_proxy(PROXY)
    if existing is None:
        return client.create(upstream=upstream, name=PROXY, listen="127.0.0.1:0")
    body = APIConsumer.post(f"/proxies/{PROXY}", json={"upstream": upstream}).json()
    return Proxy(**body)


def _forget_proxy(api: ToxiproxyApi, proxy: Proxy) -> None:
    """Leave the Toxiproxy as found (no toxics; our proxy gone), even if its API already
    went away under an interrupted run."""
    with suppress(requests.RequestException):
        api.client().reset()
        if api.ours:
            proxy.destroy()


def proxy_url(proxy: Proxy) -> str:
    host, port = proxy.listen.rsplit(":", 1)
    return f"http://{'127.0.0.1' if host in ('', '0.0.0.0', '[::]') else host}:{port}"


@contextmanager
def fault_rig(tmp_path: Path, api: ToxiproxyApi, *, private_tracking: bool = False,
              private_primary_db: bool = False,
              before_start: Callable[[Path], None] | None = None,
              **tuning: object) -> Iterator[Rig]:
    """Everything a cell needs, built and torn down; processes are not started yet."""
    logs = tmp_path / "logs"
    logs.mkdir()
    with ExitStack() as stack:
        redis_server = stack.enter_context(private_redis())
        primary_pg = tracking_pg = None
        if private_primary_db:
            primary_pg = stack.enter_context(private_postgres("geo_primary"))
            primary_url = primary_pg.url
        else:
            primary_url = stack.enter_context(temporary_database())
        if private_tracking:
            tracking_pg = stack.enter_context(private_postgres("geo_tracking"))
            tracking_url = tracking_pg.url
        else:
            tracking_url = stack.enter_context(temporary_database("geo_tracking"))
        primary = stack.enter_context(primary_site(tmp_path / "primary", primary_url))
        # Teardown: no graceful stop (uvicorn would wait out the cursor's long poll).
        stack.callback(kill_primary, primary)
        proxy = ensure_proxy(api, primary.url.removeprefix("http://"))
        stack.callback(_forget_proxy, api, proxy)
        config = init_secondary(
            tmp_path / "secondary", primary_url=proxy_url(proxy), name=primary.secondary,
            secret=primary.secret, database_url=tracking_url, broker_url=redis_server.url,
            extra={**FAULT_TUNING, **tuning})
        settings = load_settings(config).require_secondary()
        if before_start is not None:
            before_start(settings.mirror_root)
        secondary = SecondarySite(config, settings,
                                  make_engine(settings.database_url, pooled=False))
        stack.callback(secondary.engine.dispose)
        deployment = FaultDeployment("production", primary, secondary, logs)
        stack.callback(deployment.stop_all)
        checker = Checker(settings.mirror_root, primary.settings.storage_root)

        def publish(change: Change) -> None:
            checker.record(change)
            deployment.publish(change)

        workload = Workload(primary.settings.storage_root, tmp_path / "scratch", publish)
        checker.start()
        stack.callback(checker.stop)
        yield Rig(deployment, api, proxy, redis_server, checker, workload,
                  tracking_pg=tracking_pg, primary_pg=primary_pg)
