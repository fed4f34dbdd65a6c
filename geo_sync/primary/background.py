"""What `primary serve` does besides answering requests: prune the event log, take
checksums, drain the git hooks' push spool and refresh the metrics, each on its own
interval in the API's event loop, the work itself in the thread pool; and, on a site
promoted by force, fence the old primary until it answers (geo_sync.primary.fencing).

A job whose loop dies (a bug: each pass's own errors are logged and retried) is never
a silent death: ``fatal`` is called, which stops the server, and the process exits
non-zero for its supervisor to restart it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from geo_sync.db import write_transaction
from geo_sync.logging import get_logger
from geo_sync.metrics import METRICS_REFRESH_ERRORS
from geo_sync.primary import checksummer, fencing, hooks
from geo_sync.primary.metrics import PrimaryCollector
from geo_sync.primary.retention import prune
from geo_sync.settings import PrimarySettings

log = get_logger("api")


class BackgroundJobs:
    """The primary's periodic jobs; each ``*_once`` is one pass, callable from tests."""

    def __init__(self, settings: PrimarySettings, engine: Engine,
                 fatal: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.engine = engine
        self.collector = PrimaryCollector(settings, engine)
        #: Called when a job's loop died: stops the server (geo_sync.cli.serving).
        self.fatal = fatal

    def refresh_metrics(self) -> None:
        try:
            self.collector.refresh()
        except Exception:
            METRICS_REFRESH_ERRORS.inc()
            raise

    def prune_once(self) -> None:
        with write_transaction(self.engine) as conn:
            prune(conn, self.settings.event_retention_seconds)

    def drain_pushes(self) -> None:
        hooks.drain_spool(self.engine, self.settings.storage_root)

    def checksum_once(self) -> None:
        checksummer.run_once(self.engine, self.settings.storage_root,
                             self.settings.reverify_after_seconds)

    async def _every(self, seconds: float, job: Callable[[], None], name: str) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await run_in_threadpool(job)
            except Exception as exc:  # keep serving; the next pass retries
                log.warning(f"{name}_failed", error=str(exc))

    def _guard(self, task: asyncio.Task[None]) -> None:
        """A job's task ended: fine if cancelled (stopping) or done (the fence loop has
        nothing left); an exception stops the process."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.critical("background_loop_died", job=task.get_name(), error=repr(exc),
                         hint="a bug: the process exits for its supervisor to restart it")
            self.fatal()

    async def start(self) -> list[asyncio.Task[None]]:
        """Start every job in the running loop; the caller cancels the tasks to stop."""
        jobs = await self._start()
        for job in jobs:
            job.add_done_callback(self._guard)
        return jobs

    async def _start(self) -> list[asyncio.Task[None]]:
        jobs = [
            asyncio.create_task(fencing.fence_loop(self.engine, run_in_threadpool,
                                                   asyncio.sleep), name="fence"),
            asyncio.create_task(self._every(self.settings.prune_interval_seconds,
                                            self.prune_once, "prune"), name="prune"),
            asyncio.create_task(self._every(self.settings.checksum_interval_seconds,
                                            self.checksum_once, "checksum"),
                                name="checksum"),
            asyncio.create_task(self._every(self.settings.push_spool_interval_seconds,
                                            self.drain_pushes, "push_spool"),
                                name="push_spool"),
        ]
        if self.settings.metrics.port:
            try:  # a first reading, so a scrape right after start has the gauges
                await run_in_threadpool(self.refresh_metrics)
            except Exception as exc:  # the loop below retries; serving matters more
                log.warning("metrics_failed", error=str(exc))
            jobs.append(asyncio.create_task(self._every(
                self.settings.metrics.refresh_seconds, self.refresh_metrics, "metrics"),
                name="metrics"))
        return jobs
