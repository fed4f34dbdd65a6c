"""Timing geo-sync end to end for benchmarks: PostgreSQL primary and tracking DB,
Redis, and real `primary serve`, `secondary run` and `geo-sync worker` processes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select

from geo_sync.db import write_transaction
from geo_sync.paths import TEMP_PREFIX
from geo_sync.primary.models import CatalogItem
from geo_sync.primary.publish import Change, publish
from replicators.registry import REPLICATORS
from tests.deployment import flush_queue, unique_queue
from tests.services import REDIS_URL, temporary_database
from tests.sites import GEO_SYNC, PrimarySite, SecondarySite, primary_site, secondary_site

Writer = Callable[[Path], None]


def _count(engine: object, registry: type[Any], where: object = None) -> int:
    query = select(func.count()).select_from(registry)
    if where is not None:
        query = query.where(where)  # type: ignore[arg-type]
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(query).scalar_one())


@contextmanager
def served_primary_with_artifacts(files: dict[str, Writer]) -> Iterator[PrimarySite]:
    """A served PostgreSQL primary holding ``files`` (path -> function writing it)."""
    with tempfile.TemporaryDirectory() as tmp, temporary_database() as purl, \
            primary_site(Path(tmp) / "p", purl) as primary:
        root = primary.storage("artifacts")
        with write_transaction(primary.engine) as conn:
            for path, write in files.items():
                target = root / path
                target.parent.mkdir(parents=True, exist_ok=True)
                write(target)
                digest = hashlib.sha256(target.read_bytes()).hexdigest()
                publish(conn, Change("artifact", "created", path,
                                     size=target.stat().st_size, checksum=digest))
        yield primary


def tree_digests(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``root`` (temp files excluded)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and TEMP_PREFIX not in p.name}


def same_tree(source: Path, copy: Path, who: str) -> None:
    """Fail the benchmark if ``copy`` is not byte-for-byte ``source``: a fast wrong copy
    is not a result."""
    if tree_digests(source) != tree_digests(copy):
        raise SystemExit(f"{who} did not produce an exact copy of {source} in {copy}")


@dataclass
class RunningSecondary:
    """A secondary on PostgreSQL + Redis whose `secondary run` process is running."""

    site: SecondarySite
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, *args: str) -> None:
        """Start a geo-sync process; its log goes to $GEO_SYNC_BENCH_LOGS/<command>.log if
        that is set (for finding out why a number is what it is), else nowhere."""
        logs = os.environ.get("GEO_SYNC_BENCH_LOGS")
        log: int | IO[bytes] = subprocess.DEVNULL
        if logs:
            Path(logs).mkdir(parents=True, exist_ok=True)
            log = (Path(logs) / f"{args[0]}-{len(self.processes)}.log").open("ab")
        self.processes.append(subprocess.Popen(
            [GEO_SYNC, "--config", str(self.site.config), *args],
            stderr=log, start_new_session=True))
        if not isinstance(log, int):
            log.close()  # the child has its own copy

    def start_workers(self, processes: int, threads: int) -> None:
        self.spawn("worker", "--processes", str(processes), "--threads", str(threads))

    def count(self, registry: type[Any], where: object = None) -> int:
        return _count(self.site.engine, registry, where)


@contextmanager
def running_secondary(primary: PrimarySite, **tuning: object) -> Iterator[RunningSecondary]:
    """A secondary of ``primary`` with its own tracking database and Redis queue, its
    `secondary run` started; every process is stopped and the queue flushed after."""
    queue = unique_queue()
    with tempfile.TemporaryDirectory() as tmp, temporary_database("geo_tracking") as url:
        site = secondary_site(Path(tmp) / "s", primary, url, broker_url=REDIS_URL,
                              queue_name=queue, **tuning)
        running = RunningSecondary(site)
        try:
            running.spawn("secondary", "run")
            yield running
        finally:
            for proc in reversed(running.processes):
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
            site.engine.dispose()
            flush_queue(queue)


def time_worker_sync(primary: PrimarySite, *, batch_size: int = 25, threads: int = 4,
                     processes: int = 1, check: Callable[[Path], None] | None = None,
                     replicable: str = "artifact", **tuning: object) -> float:
    """Seconds from starting the worker processes to every ``replicable`` item synced
    (the registry is filled by the secondary's backfill first). ``check`` gets the
    mirror's directory for that type before it is removed."""
    replicator = REPLICATORS[replicable]
    registry = replicator.registry
    with primary.engine.connect() as conn:
        items = int(conn.execute(select(func.count()).select_from(CatalogItem).where(
            CatalogItem.replicable_type == replicable)).scalar_one())
    settings: dict[str, object] = {
        "batch_size": batch_size, "scheduler_interval_seconds": 0.2,
        "concurrency": {"artifact": 4000, "repository": 8, "job_log": 100},
        "reverify_after_seconds": 86400.0, **tuning}
    with running_secondary(primary, **settings) as secondary:
        while secondary.count(registry) < items:
            time.sleep(0.05)
        started = time.monotonic()
        secondary.start_workers(processes, threads)
        while secondary.count(registry, registry.state == "synced") < items:
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        if check is not None:
            check(secondary.site.mirror(replicator.storage_dir))
        return elapsed
