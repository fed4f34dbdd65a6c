"""Real services for the tests: PostgreSQL databases made and dropped per test, and
private PostgreSQL and Redis servers a fault test may restart or stop.

A service that is not running skips the tests that need it on a developer's
machine and fails them in CI (CI=true), where skipping would hide a regression.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.sites import free_port

PG_ADMIN_DSN = os.environ.get(
    "GEO_SYNC_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
PG_HOSTPORT = os.environ.get("GEO_SYNC_TEST_PG_URL_BASE", "postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("GEO_SYNC_TEST_REDIS", "redis://127.0.0.1:6379/0")


def service_missing(what: str, error: Exception) -> None:
    """Skip locally, fail in CI."""
    message = f"{what} is not reachable ({error})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def temporary_database(prefix: str = "geo_test") -> Iterator[str]:
    """Create a uniquely named PostgreSQL database; yield its SQLAlchemy URL; drop it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        service_missing("PostgreSQL", exc)
        raise
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{PG_HOSTPORT}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- private servers the tests may restart, stop and kill ----------------------------

PG_BIN = Path(os.environ.get("GEO_SYNC_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class PrivateService:
    """A server of our own on a free port: ``url`` for clients, and stop/start/restart.

    The shared servers must never be stopped by a test; these may be, at will.
    """

    url: str
    _stop: Callable[[], None]
    _start: Callable[[], None]
    running: bool = True

    def stop(self) -> None:
        if self.running:
            self._stop()
            self.running = False

    def start(self) -> None:
        if not self.running:
            self._start()
            self.running = True

    def restart(self) -> None:
        self.stop()
        self.start()


def _as_postgres(*argv: str) -> None:
    """Run a PostgreSQL tool as the postgres user (initdb and pg_ctl refuse root)."""
    command = " ".join(shlex.quote(arg) for arg in argv)
    if os.geteuid() == 0:
        args = ["su", "postgres", "-s", "/bin/sh", "-c", command]
    else:
        args = ["/bin/sh", "-c", command]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr[-2000:]}")


@contextmanager
def private_postgres(database: str = "geo") -> Iterator[PrivateService]:
    """A PostgreSQL cluster of our own (initdb + pg_ctl under a temp dir, a free port)
    with an empty database ``database``; yields its SQLAlchemy URL and controls."""
    if not (PG_BIN / "initdb").exists():
        service_missing("PostgreSQL binaries", FileNotFoundError(str(PG_BIN / "initdb")))
    # Not under pytest's tmp_path: the postgres user cannot enter root's 0700 dirs.
    base = Path(tempfile.mkdtemp(prefix="geo-sync-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    port = free_port()
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                 "--no-sync", "-E", "UTF8")
    options = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off")

    def start() -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options,
                     "-l", str(base / "server.log"), "-w", "-t", "60", "start")

    def stop() -> None:
        # "fast" disconnects every client at once, as a restart by an operator does.
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")

    start()
    service = PrivateService(f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}",
                             stop, start)
    try:
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
                             autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        yield service
    finally:
        if service.running:
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def private_redis() -> Iterator[PrivateService]:
    """A redis-server of our own on a free port, without persistence (a restart loses
    the queue, as a crash would); yields its URL and controls."""
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server", FileNotFoundError("redis-server"))
        raise AssertionError("unreachable")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {proc.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError(f"redis-server not listening on {port} after 90 s")

    def stop() -> None:
        proc = procs.pop()
        proc.terminate()
        proc.wait(timeout=30)

    start()
    service = PrivateService(f"redis://127.0.0.1:{port}/0", stop, start)
    try:
        yield service
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
