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
import time
from collections.abc import Callable

import dramatiq
from prometheus_client import REGISTRY

from geo_sync.errors import DaemonFailed, GeoSyncError
from geo_sync.local_status import StatusSocket
from geo_sync.logging import get_logger, set_process_title
from geo_sync.metrics import declare_types, serve_metrics
from geo_sync.secondary import bootstrap, leader, reselect
from geo_sync.secondary.cursor import LogCursor
from geo_sync.secondary.heartbeat import Heartbeat
from geo_sync.secondary.metrics import SiteCollector, run_refresher
from geo_sync.secondary.runtime import Runtime, open_runtime
from geo_sync.secondary.scheduler import Scheduler
from geo_sync.secondary.worker import threads_alive
from geo_sync.settings import SecondarySettings
from geo_sync.signals import block_stop_signals, wait_for_stop_signal_while
from geo_sync.tracking import epoch_row
from replicators.type_map import REPLICATORS

log = get_logger("daemon")


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
        self.failed = threading.Event()
        self.loops: dict[str, threading.Thread] = {}
        self._renewed = 0.0
        self._lease_failures = 0
        self._announced_standby = False
        self.heartbeat: Heartbeat | None = None
        self.collector: SiteCollector | None = None

    # -- lifecycle ------------------------------------------------------------

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()

    def start_embedded_workers(self) -> None:
        if self.settings.broker_url == "embedded":
            bootstrap.install_runtime(self.runtime)
            self.worker = dramatiq.Worker(self.messaging.broker,
                                          worker_threads=self.settings.worker_threads,
                                          worker_timeout=bootstrap.IDLE_POLL_MS)
            self.worker.start()
            declare_types(list(REPLICATORS))
            self.heartbeat = Heartbeat(self.runtime, "embedded").start()

    def start_metrics(self) -> None:
        """Serve /metrics with the site gauges, refreshed on their interval (when on)."""
        metrics = self.settings.metrics
        if not metrics.port:
            return
        depth = None
        if self.settings.broker_url == "embedded":
            broker = self.messaging.broker
            queue = self.settings.queue_name

            def depth() -> int | None:
                # The in-process broker's queue; dramatiq's StubBroker keeps one per name.
                found = getattr(broker, "queues", {}).get(queue)
                return found.qsize() if found is not None else 0

        collector = self.collector = SiteCollector(self.settings, self.runtime.engine, depth)
        REGISTRY.register(collector)
        serve_metrics(metrics.host, metrics.port, "secondary run")
        self._spawn("geo-sync-metrics", lambda: run_refresher(
            collector, self.stop_event, metrics.refresh_seconds))

    def workers_alive(self) -> bool:
        """Embedded mode: whether the in-process dramatiq threads still run."""
        return self.worker is None or threads_alive(self.worker)

    def run(self) -> None:
        """Lead or stand by until ``stop()``; see ``run_secondary`` for signals.

        Nothing the tracking DB or the primary does ends this loop: a failed lease
        renewal is retried every ``recovery_probe_seconds``, and a leader that could
        not renew for a whole lease period steps down (a standby may have taken
        over). Only a bug ends it, and ``run_secondary`` then exits non-zero.
        """
        # The config's selection is the one to follow (`secondary reselect` applies an
        # edited one without a restart); a change makes the cursor backfill.
        reselect.apply(self.runtime.engine, self.settings.selection.rules())
        self.start_embedded_workers()
        try:
            while not self.stop_event.is_set():
                self.stop_event.wait(self.lead_once())
        finally:
            self._shutdown()

    def lead_once(self) -> float:
        """Take or renew the cursor lease and start or stop the loops to match; return
        how long to wait before the next renewal."""
        holder, ttl = self.runtime.worker_id, self.settings.cursor_lease_seconds
        try:
            acquired = leader.acquire(self.runtime.engine, holder, ttl)
        except Exception as exc:  # the tracking DB is down or restarting
            self._lease_failures += 1
            if self.is_leader.is_set() and time.monotonic() - self._renewed > ttl:
                log.error("cursor_lease_unrenewable", holder=holder, error=str(exc),
                          hint="the tracking database is unreachable; retrying")
                self.is_leader.clear()
            elif self._lease_failures == 1:
                log.warning("cursor_lease_renewal_failed", error=str(exc))
            return jittered(self.probe_delay(self._lease_failures))
        if self._lease_failures:
            log.info("tracking_db_recovered", after_failures=self._lease_failures)
            self._lease_failures = 0
        if acquired:
            self._renewed = time.monotonic()
            if not self.is_leader.is_set():
                log.info("became_active_cursor", holder=holder)
                self.is_leader.set()
            self._ensure_loops()
            self._announced_standby = False
        elif self.is_leader.is_set():
            log.error("lost_cursor_lease", holder=holder)
            self.is_leader.clear()
        elif not self._announced_standby:
            log.info("standby", hint="another `secondary run` holds the cursor lease")
            self._announced_standby = True
        return jittered(ttl / 3)

    def _shutdown(self) -> None:
        self.is_leader.clear()
        self.wake.set()
        # The cursor may sit in a long-poll; abandoning it is safe because a
        # batch is applied in one transaction or not at all.
        for thread in self.loops.values():
            thread.join(timeout=1)
        self.cursor.close()
        self.runtime.stopping.set()
        if self.worker is not None:
            self.worker.stop(timeout=60_000)
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.collector is not None:
            REGISTRY.unregister(self.collector)
            self.collector.close()
        try:
            leader.release(self.runtime.engine, self.runtime.worker_id)
        except Exception as exc:  # it expires on its own within a lease
            log.warning("cursor_lease_not_released", error=str(exc))
        self.runtime.close()
        log.info("stopped")

    def probe_delay(self, failures: int) -> float:
        """How long to wait after ``failures`` failures in a row of a whole loop: short
        backoff, capped at the probe interval so a recovered dependency is noticed within
        seconds (items back off on their own, in the registry)."""
        return min(2.0 ** failures / 4, self.settings.recovery_probe_seconds)

    def _ensure_loops(self) -> None:
        """Start the cursor and scheduler threads unless they are running already (a
        thread from an earlier term may still be finishing a long-poll: it carries on)."""
        for name, target in (("geo-sync-cursor", self._cursor_loop),
                             ("geo-sync-scheduler", self._scheduler_loop)):
            thread = self.loops.get(name)
            if thread is None or not thread.is_alive():
                self.loops[name] = self._spawn(name, target)

    def _spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(target=self._guarded(name, target), name=name, daemon=True)
        thread.start()
        return thread

    def _guarded(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        """``target``, but an exception escaping it stops the daemon as failed, so the
        process exits non-zero and its supervisor restarts it (never a silent death)."""
        def body() -> None:
            try:
                target()
            except BaseException as exc:
                log.critical("daemon_thread_died", thread=name, error=repr(exc),
                             hint="a bug: the process exits for its supervisor to restart it")
                self.failed.set()
                self.stop()
                raise
        return body

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
                    self.on_recovered()
                failures = 0
            except Exception as exc:
                failures += 1
                message = str(exc) if isinstance(exc, GeoSyncError) else repr(exc)
                delay = jittered(self.probe_delay(failures))
                log.warning("cursor_error", error=message, retry_in=round(delay, 2))
                try:
                    self.cursor.record_error(message)
                except Exception as db_exc:  # the tracking DB is down too; logs must do
                    log.warning("cursor_error_not_recorded", error=str(db_exc))
                self.stop_event.wait(delay)

    def on_recovered(self) -> None:
        """The primary answers again: let the scheduler retry what failed meanwhile."""
        self.scheduler.dependency_recovered.set()
        self.wake.set()

    def _scheduler_loop(self) -> None:
        while self._active():
            try:
                self.scheduler.run_once()
            except Exception as exc:
                log.warning("scheduler_error", error=str(exc))
            self.wake.wait(jittered(self.settings.scheduler_interval_seconds))
            self.wake.clear()


def run_secondary(settings: SecondarySettings, status: StatusSocket | None = None) -> None:
    """The body of `geo-sync secondary run`: run until SIGTERM or SIGINT, answering
    `geo-sync status` and `check` on ``status`` meanwhile."""
    set_process_title(f"secondary run {settings.name}")
    block_stop_signals()
    daemon = SecondaryDaemon(settings)
    with daemon.runtime.engine.connect() as conn:
        followed = epoch_row.read(conn)
    if followed.promoted_at is not None:
        daemon.runtime.close()
        raise GeoSyncError(
            f"this site was promoted to primary at {followed.promoted_at.isoformat()} "
            f"(epoch {followed.epoch}): its mirror is a primary's storage now",
            hint="run `geo-sync --config <its primary config> primary serve` instead")
    # In the main thread, so that a busy metrics port stops the process with its hint.
    daemon.start_metrics()
    if status is not None:
        status.start(daemon._spawn)
    thread = threading.Thread(target=daemon._guarded("geo-sync-daemon", daemon.run),
                              name="geo-sync-daemon")
    thread.start()
    received = wait_for_stop_signal_while(
        lambda: thread.is_alive() and not daemon.failed.is_set() and daemon.workers_alive())
    if received is not None:
        log.info("stopping", signal=received.name)
    daemon.stop()
    if status is not None:
        status.close()
    thread.join()
    if received is None or daemon.failed.is_set():
        raise DaemonFailed("`secondary run` stopped: one of its loops died (see the log)")
