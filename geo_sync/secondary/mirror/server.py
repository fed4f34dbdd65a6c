"""Running the mirror server: uvicorn on the configured host and port, HTTPS when a
certificate and key are configured; several processes on one socket (``processes``)
through the supervisor `primary serve` uses (``cli.serving``)."""

from __future__ import annotations

import os
import socket
import ssl

import uvicorn

from geo_sync.db import make_engine
from geo_sync.errors import ConfigError
from geo_sync.file_response import ZeroCopyH11Protocol
from geo_sync.logging import get_logger, set_process_title
from geo_sync.metrics import serve_metrics
from geo_sync.migrate import TRACKING
from geo_sync.secondary.mirror.app import create_app
from geo_sync.settings import SecondarySettings, Settings

log = get_logger("mirror")


def _check_tls(settings: SecondarySettings) -> None:
    """Load the certificate and key once now, so a wrong file is one clear error."""
    mirror = settings.mirror
    if mirror.tls_cert_file is None or mirror.tls_key_file is None:
        return
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(mirror.tls_cert_file, mirror.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the mirror's TLS certificate {mirror.tls_cert_file} and key "
            f"{mirror.tls_key_file}: {exc}",
            hint="secondary.mirror.tls_cert_file must be a PEM certificate (chain) and "
            "tls_key_file its unencrypted PEM key, both readable by this user") from None


def prepare(settings: SecondarySettings) -> socket.socket:
    """Everything that can be wrong before serving, as one clear error each: the TLS
    pair, the tracking schema, the port. Returns the bound listening socket."""
    _check_tls(settings)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        TRACKING.require_current(engine)
    finally:
        engine.dispose()
    return _bind(settings.mirror.listen_host, settings.mirror.listen_port)


def serve_mirror(settings: SecondarySettings, sock: socket.socket, index: int = 0,
                 processes: int = 1) -> None:
    """Serve the mirror on ``sock`` in this process until SIGTERM or SIGINT; process
    ``index`` 0 serves /metrics (each process counts its own requests)."""
    mirror = settings.mirror
    engine = make_engine(settings.database_url, pool_size=16)
    scheme = "https" if mirror.tls_cert_file else "http"
    suffix = f" (process {index + 1} of {processes})" if processes > 1 else ""
    set_process_title(f"secondary serve {mirror.listen_host}:{mirror.listen_port}{suffix}")
    if index == 0:
        serve_metrics(settings.metrics.host, mirror.metrics_port, "secondary serve")
        log.info("mirror_listening",
                 url=f"{scheme}://{mirror.listen_host}:{mirror.listen_port}",
                 primary=settings.primary_url, processes=processes)
    try:
        uvicorn.Server(uvicorn.Config(
            create_app(settings, engine), http=ZeroCopyH11Protocol,
            ssl_certfile=str(mirror.tls_cert_file) if mirror.tls_cert_file else None,
            ssl_keyfile=str(mirror.tls_key_file) if mirror.tls_key_file else None,
            log_config=None, access_log=False, server_header=False,
            timeout_keep_alive=30, timeout_graceful_shutdown=5,
        )).run(sockets=[sock])
    finally:
        sock.close()
        engine.dispose()


def serve_child(settings_all: Settings, sock: socket.socket, index: int,
                processes: int) -> None:
    """One of several `secondary serve` processes on one socket (``cli.serving``)."""
    serve_mirror(settings_all.require_secondary(), sock, index, processes)


def default_processes() -> int:
    """One per core, at most 4, as `primary serve`: each process is one core's worth
    of Python, and past that the tracking DB and the primary are the limit."""
    return max(1, min(4, os.cpu_count() or 1))


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, or one clear error (a busy port, a wrong address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        raise ConfigError(
            f"the mirror server cannot listen on {host}:{port}: "
            f"{exc.strerror or exc}",
            hint="another process holds that port, or the address is not this host's: "
            "change secondary.mirror.listen_host / listen_port") from None
    sock.set_inheritable(True)
    return sock
