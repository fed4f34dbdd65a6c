"""`geo-sync secondary run`: leader election, log cursor, scheduler (and, in embedded
mode, the worker threads) in one process.

The process that holds the cursor lease runs the cursor and the scheduler;
any other waits as a standby and takes over within one lease period after the
active one dies. SIGTERM stops taking work, lets workers finish their current
item, gives the lease up and exits.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import dramatiq

from geo_sync.errors import GeoSyncError
from geo_sync.logging import get_logger, set_process_title
from geo_sync.secondary import bootstrap, leader
from geo_sync.secondary.cursor import LogCursor
from geo_sync.secondary.runtime import Runtime, open_runtime
from geo_sync.secondary.scheduler import Scheduler
from geo_sync.settings import SecondarySettings
from geo_sync.signals import block_stop_signals, wait_for_stop_signal

log = get_logger("daemon")
ERROR_BACKOFF_CAP = 30.0


def jittered(seconds: float) -> float:
    return seconds * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security


class SecondaryDaemon:
    """Drive ``run()``; tests may instead call the parts' ``run_once`` directly."""

    def __init__(self, settings: SecondarySettings) -> None:
        self.settings = settings
        self.runtime: Runtime = open_runtime(settings)
        self.messaging = bootstrap.setup(settings)
        self.wake = threading.Event()
        self.cursor = LogCursor(self.runtime, on_applied=self.wake.set)
        self.scheduler = Scheduler(self.runtime, self.messaging)
        self.stop_event = threading.Event()
        self.worker: dramatiq.Worker | None = None
        self.is_leader = threading.Event()

    # -- lifecycle ------------------------------------------------------------

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()

    def start_embedded_workers(self) -> None:
        if self.settings.broker_url == "embedded":
            bootstrap.install_runtime(self.runtime)
            self.worker = dramatiq.Worker(self.messaging.broker,
                                          worker_threads=self.settings.worker_threads)
            self.worker.start()

    def run(self) -> None:
        """Lead or stand by until ``stop()``; see ``run_secondary`` for signals."""
        self.start_embedded_workers()
        holder = self.runtime.worker_id
        ttl = self.settings.cursor_lease_seconds
        announced_standby = False
        threads: list[threading.Thread] = []
        try:
            while not self.stop_event.is_set():
                if leader.acquire(self.runtime.engine, holder, ttl):
                    if not self.is_leader.is_set():
                        log.info("became_active_cursor", holder=holder)
                        self.is_leader.set()
                        threads = [self._spawn("geo-sync-cursor", self._cursor_loop),
                                   self._spawn("geo-sync-scheduler", self._scheduler_loop)]
                    announced_standby = False
                elif self.is_leader.is_set():
                    log.error("lost_cursor_lease", holder=holder)
                    self.is_leader.clear()
                elif not announced_standby:
                    log.info("standby", hint="another `secondary run` holds the cursor lease")
                    announced_standby = True
                self.stop_event.wait(jittered(ttl / 3))
        finally:
            self.is_leader.clear()
            self.wake.set()
            # The cursor may sit in a long-poll; abandoning it is safe because a
            # batch is applied in one transaction or not at all.
            for thread in threads:
                thread.join(timeout=1)
            self.runtime.stopping.set()
            if self.worker is not None:
                self.worker.stop(timeout=60_000)
            leader.release(self.runtime.engine, holder)
            self.runtime.close()
            log.info("stopped")

    def _spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    def _active(self) -> bool:
        return self.is_leader.is_set() and not self.stop_event.is_set()

    # -- loops ----------------------------------------------------------------

    def _cursor_loop(self) -> None:
        failures = 0
        while self._active():
            try:
                self.cursor.run_once()
                if failures:
                    self.cursor.record_error(None)
                    log.info("cursor_recovered")
                failures = 0
            except Exception as exc:
                failures += 1
                message = str(exc) if isinstance(exc, GeoSyncError) else repr(exc)
                delay = jittered(min(2.0 ** failures / 4, ERROR_BACKOFF_CAP))
                log.warning("cursor_error", error=message, retry_in=round(delay, 2))
                try:
                    self.cursor.record_error(message)
                except Exception as db_exc:  # the tracking DB is down too; logs must do
                    log.warning("cursor_error_not_recorded", error=str(db_exc))
                self.stop_event.wait(delay)

    def _scheduler_loop(self) -> None:
        while self._active():
            try:
                self.scheduler.run_once()
            except Exception as exc:
                log.warning("scheduler_error", error=str(exc))
            self.wake.wait(jittered(self.settings.scheduler_interval_seconds))
            self.wake.clear()


def run_secondary(settings: SecondarySettings) -> None:
    """The body of `geo-sync secondary run`: run until SIGTERM or SIGINT."""
    set_process_title(f"secondary run {settings.name}")
    block_stop_signals()
    daemon = SecondaryDaemon(settings)
    thread = threading.Thread(target=daemon.run, name="geo-sync-daemon")
    thread.start()
    received = wait_for_stop_signal()
    log.info("stopping", signal=received.name)
    daemon.stop()
    thread.join()
