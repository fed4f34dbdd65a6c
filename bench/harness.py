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
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select

from geo_sync.cli.serving import default_processes
from geo_sync.db import write_transaction
from geo_sync.paths import TEMP_PREFIX
from geo_sync.primary.models import CatalogItem
from geo_sync.primary.publish import Change, publish
from geo_sync.tracking.models import WorkerRow
from replicators.type_map import REPLICATORS
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
def served_primary_with_artifacts(files: dict[str, Writer], *, published: bool = True
                                  ) -> Iterator[PrimarySite]:
    """A served PostgreSQL primary holding ``files`` (path -> function writing it),
    published in its catalog unless ``published`` is False (see ``artifact_changes``)."""
    with tempfile.TemporaryDirectory() as tmp, temporary_database() as purl, \
            primary_site(Path(tmp) / "p", purl, processes=default_processes()) as primary:
        root = primary.storage("artifacts")
        for path, write in files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            write(target)
        if published:
            with write_transaction(primary.engine) as conn:
                for change in artifact_changes(primary, list(files)):
                    publish(conn, change)
        yield primary


def artifact_changes(primary: PrimarySite, paths: list[str]) -> list[Change]:
    """"created" changes for artifacts already on the primary's disk (size and sha256
    taken now, so that publishing them later costs only the publishing)."""
    root = primary.storage("artifacts")
    return [Change("artifact", "created", path, size=(root / path).stat().st_size,
                   checksum=hashlib.sha256((root / path).read_bytes()).hexdigest())
            for path in paths]


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
def running_secondary(primary: PrimarySite, *, start_run: bool = True, **tuning: object
                      ) -> Iterator[RunningSecondary]:
    """A secondary of ``primary`` with its own tracking database and Redis queue, its
    `secondary run` started (unless ``start_run`` is False); every process is stopped
    and the queue flushed after."""
    queue = unique_queue()
    with tempfile.TemporaryDirectory() as tmp, temporary_database("geo_tracking") as url:
        site = secondary_site(Path(tmp) / "s", primary, url, broker_url=REDIS_URL,
                              queue_name=queue, **tuning)
        running = RunningSecondary(site)
        try:
            if start_run:
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
    """Seconds from the secondary's backfill writing its first registry row to the last
    ``replicable`` item synced, with the workers started and idle beforehand (see
    ``time_worker_sync_phases``)."""
    return time_worker_sync_phases(primary, batch_size=batch_size, threads=threads,
                                   processes=processes, check=check, replicable=replicable,
                                   **tuning)[1]


def _tuned(batch_size: int, tuning: dict[str, object]) -> dict[str, object]:
    return {"batch_size": batch_size, "scheduler_interval_seconds": 0.2,
            "concurrency": {"artifact": 4000, "repository": 8, "job_log": 100},
            "reverify_after_seconds": 86400.0, **tuning}


def _wait_for_workers(secondary: RunningSecondary, processes: int) -> None:
    """Until every worker process has started (its first heartbeat row)."""
    while secondary.count(WorkerRow, WorkerRow.kind == "worker") < processes:
        time.sleep(0.2)


def time_worker_sync_phases(primary: PrimarySite, *, batch_size: int = 25, threads: int = 4,
                            processes: int = 1, check: Callable[[Path], None] | None = None,
                            replicable: str = "artifact", **tuning: object
                            ) -> tuple[float, float]:
    """(seconds to fill the registry, seconds to the last item synced), both from the
    backfill's first registry row: the workers are started and idle before `secondary
    run` is, so neither's start-up is in the clock (as an rsync daemon's is not), and
    the registry fill is.

    Both ends are timestamps the geo-sync processes wrote (``created_at``,
    ``last_synced_at``), read once they are done; the harness looks only every half
    second, so its own queries stay off the measured path (polling count(*) every
    10 ms cost the two cores)."""
    replicator = REPLICATORS[replicable]
    registry = replicator.registry_table
    with primary.engine.connect() as conn:
        items = int(conn.execute(select(func.count()).select_from(CatalogItem).where(
            CatalogItem.replicable_type == replicable)).scalar_one())
    with running_secondary(primary, start_run=False,
                           **_tuned(batch_size, tuning)) as secondary:
        secondary.start_workers(processes, threads)
        _wait_for_workers(secondary, processes)
        secondary.spawn("secondary", "run")
        while secondary.count(registry, registry.state == "synced") < items:
            time.sleep(0.5)
        with secondary.site.engine.connect() as conn:
            first, filled, last = conn.execute(select(
                func.min(registry.created_at), func.max(registry.created_at),
                func.max(registry.last_synced_at))).one()
        if check is not None:
            check(secondary.site.mirror(replicator.storage_dir))
        return (filled - first).total_seconds(), (last - first).total_seconds()


def time_live_sync(primary: PrimarySite, changes: list[Change], *, batch_size: int = 25,
                   threads: int = 4, processes: int = 1,
                   check: Callable[[Path], None] | None = None, **tuning: object) -> float:
    """Seconds from ``changes`` (artifacts) committed on the primary in one transaction
    to the last of them synced, with `secondary run` and the workers already running and idle: the
    deployed case, where a CI job's artifacts appear and the mirror follows. Events,
    the cursor, the scheduler and the workers are all inside the clock; process
    start-up is not (as an rsync daemon's is not)."""
    registry = REPLICATORS["artifact"].registry_table
    with running_secondary(primary, **_tuned(batch_size, tuning)) as secondary:
        secondary.start_workers(processes, threads)
        _wait_for_workers(secondary, processes)
        time.sleep(2.0)  # the cursor's first long-poll and the scheduler's first pass
        # The clock starts once the primary has committed the changes: publishing is
        # the CI system's work on the primary, not replication.
        with write_transaction(primary.engine) as conn:
            for change in changes:
                publish(conn, change)
        started = datetime.now(UTC)
        while secondary.count(registry, registry.state == "synced") < len(changes):
            time.sleep(0.5)
        with secondary.site.engine.connect() as conn:
            last = conn.execute(select(func.max(registry.last_synced_at))).scalar_one()
        assert last is not None, "every item synced, yet none has a last_synced_at"
        if check is not None:
            check(secondary.site.mirror("artifacts"))
        return float((last - started).total_seconds())
