"""`primary serve` and `secondary serve` as several processes sharing one listening
socket.

One Python process serving the Geo API capped small-blob transfers at 400-590
requests/s (docs/benchmarks.md). The socket is bound once, by the supervisor, so a
busy port is still one clear error; each child runs its own uvicorn and engine on
it and the kernel hands every connection to whichever child accepts first. The
periodic jobs (pruning, checksums, the push spool, metrics) run in child 0 only.
`secondary serve` (the mirror server) runs its own serving function the same way.
A child that dies takes the others down and the command exits non-zero for its
supervisor (systemd, compose), as `geo-sync worker` does.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing import resource_tracker
from pathlib import Path

import uvicorn
from prometheus_client import REGISTRY

from geo_sync.errors import DaemonFailed
from geo_sync.file_response import ZeroCopyH11Protocol
from geo_sync.logging import configure_logging, get_logger, set_process_title
from geo_sync.metrics import serve_metrics
from geo_sync.primary.api import GeoApi, create_app
from geo_sync.primary.site import open_primary
from geo_sync.settings import Settings, load_settings
from geo_sync.signals import STOP_SIGNALS, block_stop_signals, wait_for_stop_signal_while
from geo_sync.wire import API_PREFIX

log = get_logger("cli")
_PR_SET_PDEATHSIG = 1

#: Serves on the socket in this process until SIGTERM: (settings, socket, index, count).
#: A module-level function: the spawned children are handed it by name.
Serve = Callable[[Settings, socket.socket, int, int], None]


def default_processes() -> int:
    """One per core, at most 4: past that the database is the limit, not Python."""
    return max(1, min(4, os.cpu_count() or 1))


def serve_on(settings_all: Settings, sock: socket.socket, index: int = 0,
             processes: int = 1) -> None:
    """Serve the Geo API on ``sock`` in this process until SIGTERM or SIGINT; process
    ``index`` 0 also runs the periodic jobs and serves /metrics."""
    # No pre-ping: a request that meets a dead connection fails, the secondary retries
    # it, and the pool has dropped every connection by then; a ping per checkout was a
    # round trip per request.
    settings, engine = open_primary(settings_all, pre_ping=False)
    host, port = sock.getsockname()[:2]
    suffix = f" (process {index + 1} of {processes})" if processes > 1 else ""
    set_process_title(f"primary serve {host}:{port}{suffix}")
    app = create_app(settings, engine, background=index == 0)
    if index == 0 and settings.metrics.port:
        REGISTRY.register(app.state.api.jobs.collector)
        serve_metrics(settings.metrics.host, settings.metrics.port, "primary serve")
    scheme = "https" if settings.tls else "http"
    if index == 0:
        log.info("geo_api_listening", url=f"{scheme}://{host}:{port}{API_PREFIX}",
                 openapi=f"{API_PREFIX}/openapi.json", processes=processes,
                 tls=settings.tls)
    cert, key = settings.tls_cert_file, settings.tls_key_file
    server = _Server(
        app.state.api,
        uvicorn.Config(app, http=ZeroCopyH11Protocol, log_config=None, access_log=False,
                       timeout_graceful_shutdown=5,
                       ssl_certfile=str(cert) if cert else None,
                       ssl_keyfile=str(key) if key else None))
    api = app.state.api

    def stop() -> None:
        server.should_exit = True

    api.stop_server = stop
    server.run(sockets=[sock])
    engine.dispose()
    if api.failed:
        raise DaemonFailed("`primary serve` stopped: one of its background loops died "
                           "(see the background_loop_died log line)")


class _Server(uvicorn.Server):
    """uvicorn's server, which first answers the open long polls of GET /events when it
    stops: otherwise each held the graceful stop for its full wait, and uvicorn then
    cancelled it (a traceback in the log, no answer to the secondary)."""

    def __init__(self, api: GeoApi, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.api = api

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.api.signal is not None:
            self.api.signal.close()
        await super().shutdown(sockets)


def _child(config: Path, sock: socket.socket, index: int, processes: int,
           serve: Serve, parent: int) -> None:
    """A spawned serving process: it inherited the supervisor's blocked stop signals
    (uvicorn handles them itself) and dies with the supervisor."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the supervisor stops us
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    settings_all = load_settings(config)
    configure_logging(settings_all.log.level, settings_all.log.format)
    threading.Thread(target=_orphan_watchdog, args=(parent, ORPHAN_GRACE_SECONDS),
                     name="orphan-watchdog", daemon=True).start()
    serve(settings_all, sock, index, processes)


#: How long a serving process whose supervisor is gone may take to stop gracefully.
ORPHAN_GRACE_SECONDS = float(os.environ.get("GEO_SYNC_ORPHAN_GRACE_SECONDS", "30"))


def _orphan_watchdog(parent: int, grace: float) -> None:
    """End this process if its supervisor is gone and the graceful stop hangs.

    The death signal (SIGTERM when the supervisor dies) starts uvicorn's graceful stop,
    but a stop can hang (a lifespan shutdown waiting on a database that went away): such
    children were seen serving on, reparented to init, for most of an hour. Polling the
    parent also covers a supervisor that died before the death signal was armed."""
    while os.getppid() == parent:
        time.sleep(1)
    log.warning("supervisor_gone", supervisor_pid=parent, grace_seconds=grace)
    with contextlib.suppress(OSError):
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    log.error("graceful_stop_hung", supervisor_pid=parent, grace_seconds=grace,
              hint="the process is ended with exit code 70; its supervisor was killed "
                   "before it; restart the command")
    os._exit(70)


def supervise(config: Path, sock: socket.socket, processes: int, serve: Serve = serve_on,
              command: str = "primary serve") -> None:
    """Run ``processes`` children of ``serve`` on ``sock``; pass SIGTERM/SIGINT on to
    them."""
    # The resource tracker unblocks SIGTERM and SIGINT in this process when spawn
    # first starts it; start it before blocking them.
    resource_tracker.ensure_running()
    host, port = sock.getsockname()[:2]
    set_process_title(f"{command} {host}:{port} (supervisor of {processes} processes)")
    block_stop_signals()
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_child,
                                args=(config, sock, index, processes, serve, os.getpid()),
                                daemon=False) for index in range(processes)]
    for child in children:
        child.start()
    sock.close()  # the children hold it; the supervisor accepts nothing
    received = wait_for_stop_signal_while(lambda: all(c.is_alive() for c in children))
    for child in children:
        if child.is_alive():
            child.terminate()
    for child in children:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
            child.join()
    if received is None:
        codes = [child.exitcode for child in children]
        raise DaemonFailed(f"a `{command}` process exited on its own (exit codes "
                           f"{codes}); the others were stopped",
                           hint="its log says why; the supervisor (systemd, compose) "
                           "restarts the command")
