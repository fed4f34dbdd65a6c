"""`geo-sync worker`: dramatiq worker processes replicating from a Redis broker."""

from __future__ import annotations

import multiprocessing
from multiprocessing import resource_tracker
from pathlib import Path

import dramatiq

from geo_sync.errors import ConfigError, DaemonFailed
from geo_sync.logging import configure_logging, get_logger, set_process_title
from geo_sync.metrics import declare_types, serve_metrics
from geo_sync.secondary import bootstrap
from geo_sync.secondary.heartbeat import Heartbeat
from geo_sync.secondary.runtime import open_runtime
from geo_sync.settings import load_settings
from geo_sync.signals import (
    block_stop_signals,
    wait_for_stop_signal_while,
)
from replicators.type_map import REPLICATORS

log = get_logger("worker")


def worker_process(config: Path, threads: int, index: int = 0,
                   metrics_port: int | None = None) -> None:
    """One worker process: consume until SIGTERM, finish the current item, exit.
    It serves its own /metrics on ``(metrics_port or metrics.worker_port) + index``
    (when that is not 0)."""
    block_stop_signals()
    settings_all = load_settings(config)
    configure_logging(settings_all.log.level, settings_all.log.format)
    settings = settings_all.require_secondary()
    set_process_title(f"worker {settings.name} ({threads} threads)")
    declare_types(list(REPLICATORS))
    first_port = settings.metrics.worker_port if metrics_port is None else metrics_port
    if first_port:
        serve_metrics(settings.metrics.host, first_port + index, f"worker process {index}")
    runtime = open_runtime(settings)
    messaging = bootstrap.setup(settings)
    bootstrap.install_runtime(runtime)
    worker = dramatiq.Worker(messaging.broker, worker_threads=threads,
                             worker_timeout=bootstrap.IDLE_POLL_MS)
    worker.start()
    beating = Heartbeat(runtime, "worker").start()
    log.info("worker_started", worker=runtime.worker_id, threads=threads)
    received = wait_for_stop_signal_while(lambda: threads_alive(worker))
    if received is None:
        # dramatiq's threads retry the broker themselves; one that died is a bug, and a
        # worker process without it would idle forever: exit for the supervisor.
        log.critical("worker_thread_died", worker=runtime.worker_id,
                     hint="the process exits non-zero for its supervisor to restart it")
    else:
        log.info("worker_stopping", signal=received.name)
    runtime.stopping.set()
    worker.stop(timeout=60_000)
    beating.stop()
    runtime.close()
    log.info("worker_stopped", worker=runtime.worker_id)
    if received is None:
        raise DaemonFailed("`geo-sync worker` stopped: a dramatiq thread died (see the log)")


def threads_alive(worker: dramatiq.Worker) -> bool:
    """Whether every consumer and worker thread of ``worker`` still runs."""
    try:
        threads = [*list(worker.consumers.values()), *list(worker.workers)]
    except RuntimeError:  # being started in another thread right now
        return True
    # A thread appended but not started yet (ident None) is being born, not dead.
    return not any(thread.ident is not None and not thread.is_alive() for thread in threads)


def run_workers(config: Path, processes: int, threads: int,
                metrics_port: int | None = None) -> None:
    """Start ``processes`` worker processes and wait for them; signals are passed on."""
    settings = load_settings(config).require_secondary()
    if settings.broker_url == "embedded":
        raise ConfigError(
            "broker_url is 'embedded': its workers run inside `geo-sync secondary run`",
            hint="set secondary.broker_url to a redis:// URL to run separate workers",
        )
    if processes == 1:
        worker_process(config, threads, 0, metrics_port)
        return
    # The resource tracker unblocks SIGTERM and SIGINT in this process when spawn
    # first starts it; start it before blocking them.
    resource_tracker.ensure_running()
    set_process_title(f"worker {settings.name} (supervisor of {processes} processes)")
    block_stop_signals()
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=worker_process, args=(config, threads, index, metrics_port),
                                daemon=False) for index in range(processes)]
    for child in children:
        child.start()
    received = wait_for_stop_signal_while(lambda: all(c.is_alive() for c in children))
    # Both SIGTERM and Ctrl-C mean "finish the current item and stop" for a child.
    for child in children:
        if child.is_alive():
            child.terminate()
    for child in children:
        child.join()
    if received is None:
        codes = [child.exitcode for child in children]
        raise DaemonFailed(f"a worker process exited on its own (exit codes {codes}); "
                           "the others were stopped")
