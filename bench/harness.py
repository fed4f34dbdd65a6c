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
from pathlib import Path

from sqlalchemy import func, select

from geo_sync.db import write_transaction
from geo_sync.primary.models import CatalogItem
from geo_sync.primary.publish import Change, publish
from geo_sync.secondary.models import ArtifactRegistry
from tests.deployment import flush_queue, unique_queue
from tests.services import REDIS_URL, temporary_database
from tests.sites import GEO_SYNC, PrimarySite, primary_site, secondary_site

Writer = Callable[[Path], None]


def _count(engine: object, where: object = None) -> int:
    query = select(func.count()).select_from(ArtifactRegistry)
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


def time_worker_sync(primary: PrimarySite, *, batch_size: int = 25, threads: int = 4
                     ) -> float:
    """Seconds from starting one worker process to every artifact synced (the registry is
    filled by the secondary's backfill first)."""
    with primary.engine.connect() as conn:
        items = int(conn.execute(select(func.count()).select_from(CatalogItem)).scalar_one())
    queue = unique_queue()
    with tempfile.TemporaryDirectory() as tmp, temporary_database("geo_tracking") as url:
        secondary = secondary_site(
            Path(tmp) / "s", primary, url, broker_url=REDIS_URL, queue_name=queue,
            batch_size=batch_size, scheduler_interval_seconds=0.2,
            concurrency={"artifact": 4000, "repository": 8, "job_log": 100},
            reverify_after_seconds=86400.0)
        config = str(secondary.config)
        run = subprocess.Popen([GEO_SYNC, "--config", config, "secondary", "run"],
                               stderr=subprocess.DEVNULL, start_new_session=True)
        worker = None
        try:
            while _count(secondary.engine) < items:
                time.sleep(0.05)
            started = time.monotonic()
            worker = subprocess.Popen(
                [GEO_SYNC, "--config", config, "worker", "--processes", "1", "--threads",
                 str(threads)], stderr=subprocess.DEVNULL, start_new_session=True)
            while _count(secondary.engine, ArtifactRegistry.state == "synced") < items:
                time.sleep(0.01)
            return time.monotonic() - started
        finally:
            for proc in (worker, run):
                if proc is not None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait()
            secondary.engine.dispose()
            flush_queue(queue)
