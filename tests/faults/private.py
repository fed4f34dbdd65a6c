"""Private service instances a fault test may crash and restart: a redis-server and a
PostgreSQL cluster on free ports, never the shared servers."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from tests.services import service_missing
from tests.sites import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class PrivateRedis:
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"private redis-server on {self.port} did not answer")

    def crash(self) -> None:
        """SIGKILL: the queue in memory is lost, as after a crash without persistence."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        service_missing("redis-server", FileNotFoundError("redis-server not on PATH"))
    server = PrivateRedis(free_port())
    server.start()
    try:
        yield server
    finally:
        server.crash()


def _as_postgres(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["su", "postgres", "-c", command], capture_output=True, text=True,
                          check=False, timeout=120)


@dataclass
class PrivatePostgres:
    """A cluster made with initdb and run with pg_ctl as the postgres user."""

    directory: Path
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        result = _as_postgres(
            f"{PG_BIN}/pg_ctl -D {self.directory} -l {self.directory}/server.log -w "
            f"-o '-p {self.port} -k /tmp -c listen_addresses=127.0.0.1' start")
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}")

    def crash(self) -> None:
        """An immediate stop: no checkpoint, connections cut, as a crash would."""
        _as_postgres(f"{PG_BIN}/pg_ctl -D {self.directory} -m immediate -w stop")

    def create_database(self, name: str) -> str:
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists() or shutil.which("su") is None:
        service_missing("PostgreSQL binaries", FileNotFoundError(str(PG_BIN / "initdb")))
    directory = Path(f"/tmp/geo-pg-{uuid.uuid4().hex[:10]}")
    directory.mkdir(mode=0o700)
    shutil.chown(directory, "postgres", "postgres")
    made = _as_postgres(f"{PG_BIN}/initdb -D {directory} -A trust -U postgres --no-sync")
    if made.returncode != 0:
        service_missing("initdb", RuntimeError(made.stderr.strip()))
    cluster = PrivatePostgres(directory, free_port())
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.crash()
        shutil.rmtree(directory, ignore_errors=True)
