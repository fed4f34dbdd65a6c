"""Real sites for the tests: a primary set up with `primary init` and served by
`geo-sync primary serve` in its own process."""

from __future__ import annotations

import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from geo_sync.auth import issue_token
from geo_sync.cli.context import CliContext
from geo_sync.cli.main import site_status
from geo_sync.db import make_engine, write_transaction
from geo_sync.primary.secondaries import add_secondary
from geo_sync.primary.site import init_primary
from geo_sync.secondary.site import init_secondary
from geo_sync.settings import PrimarySettings, SecondarySettings, load_settings
from geo_sync.toml_out import dumps
from tests.tls import TestCA

GEO_SYNC = str(Path(sys.executable).parent / "geo-sync")


# Ports for the tests' servers. Not from the kernel (bind to port 0): that hands out a
# port of the ephemeral range (32768-60999), where every outgoing connection takes its
# local port too, so under parallel load a client could take it before the server binds
# it. Below that range instead, and a slice of its own for each xdist worker so two
# workers never pick the same one.
TEST_PORTS = range(20000, 32000)
_RANDOM = random.SystemRandom()  # hypothesis seeds the module-level random in tests
_RECENT: deque[int] = deque(maxlen=512)  # handed out lately: maybe not bound yet


def _port_slice() -> range:
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % count if worker.isdigit() else 0
    size = len(TEST_PORTS) // count
    return range(TEST_PORTS.start + index * size, TEST_PORTS.start + (index + 1) * size)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive free ports for a test's servers."""
    span = _port_slice()
    for _ in range(500):
        first = _RANDOM.randrange(span.start, span.stop - count)
        ports = range(first, first + count)
        if not any(port in _RECENT for port in ports) and all(map(_bindable, ports)):
            _RECENT.extend(ports)
            return first
    raise RuntimeError(f"no {count} free ports in a row in {span}")


def free_port() -> int:
    """A free port for a test's server (see TEST_PORTS)."""
    return free_ports(1)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline: float = 90.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {deadline}s")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a server the test started, SIGKILL it if it is still there after 15 s."""
    if process and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_http(url: str, proc: subprocess.Popen[bytes], deadline: float = 90.0,
                  verify: ssl.SSLContext | bool = True) -> None:
    """Wait until ``url`` answers at all (any status). `primary serve` listens before its
    serving process has opened its database; on a loaded machine a client with a short
    timeout would give up on the backlog in between."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            httpx.get(url, timeout=5, verify=verify)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer after {deadline}s")


# A served primary in the tests takes checksums every half second (5 s by default), so
# the secondaries' verification, which waits for them, does not make each test wait.
# A test's own environment wins (tests/secondary/test_scheduler.py turns it off).
PRIMARY_TEST_ENV = {"GEO_SYNC_PRIMARY__CHECKSUM_INTERVAL_SECONDS": "0.5"}


@dataclass
class PrimarySite:
    """A running primary: its config, engine, URL, and one registered secondary."""

    config: Path
    settings: PrimarySettings
    engine: Engine
    url: str
    secondary: str
    secret: str
    process: subprocess.Popen[bytes] | None = None
    #: `primary serve --processes`: one in tests (a supervisor and children per primary
    #: would cost the suite's shared cores); tests/primary/test_serve_processes.py and
    #: the benchmarks run more.
    processes: int = 1
    #: Served over HTTPS with a certificate of this CA (``url`` is then https://).
    tls: TestCA | None = None

    @property
    def api(self) -> str:
        return f"{self.url}/api/geo/v1"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """httpx's ``verify=`` for this primary: its test CA when it serves HTTPS."""
        return self.tls.context() if self.tls else True

    def token(self, ttl: int = 60) -> str:
        return issue_token(self.secondary, self.secret, ttl=ttl)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, timeout=90, verify=self.verify)

    def storage(self, type_dir: str) -> Path:
        return self.settings.storage_root / type_dir

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GEO_SYNC, "--config", str(self.config), *args],
            capture_output=True, text=True, check=check, timeout=120,
        )

    def stop(self) -> None:
        stop_process(self.process)

    def start(self) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        env = {**PRIMARY_TEST_ENV, **os.environ, "GEO_SYNC_PRIMARY__LISTEN_PORT": str(port)}
        self.process = subprocess.Popen(
            [GEO_SYNC, "--config", str(self.config), "primary", "serve",
             "--processes", str(self.processes)], env=env
        )
        wait_for_port(port, self.process)
        wait_for_http(f"{self.api}/openapi.json", self.process, verify=self.verify)


@contextmanager
def primary_site(directory: Path, database_url: str | None, serve: bool = True,
                 processes: int = 1, tls: TestCA | None = None) -> Iterator[PrimarySite]:
    """Init a primary in ``directory``, register secondary ``s1``, optionally serve it
    (over HTTPS with ``tls``'s server certificate when given)."""
    port = free_port()
    config = init_primary(directory, database_url=database_url, listen_port=port)
    if tls is not None:
        set_keys(config, "primary", tls_cert_file=str(tls.cert), tls_key_file=str(tls.key))
    settings = load_settings(config).require_primary()
    engine = make_engine(settings.database_url, pooled=False)
    with write_transaction(engine) as conn:
        secret = add_secondary(conn, "s1")
    scheme = "https" if tls else "http"
    site = PrimarySite(config, settings, engine, f"{scheme}://127.0.0.1:{port}", "s1", secret,
                       processes=processes, tls=tls)
    try:
        if serve:
            site.start()
        yield site
    finally:
        site.stop()
        engine.dispose()


def set_keys(config: Path, section: str, **keys: object) -> None:
    """Set ``keys`` in ``[section]`` of the TOML file ``config`` (None removes a key)."""
    data = tomllib.loads(config.read_text())
    for key, value in keys.items():
        if value is None:
            data[section].pop(key, None)
        else:
            data[section][key] = value
    config.write_text(dumps(data))


@dataclass
class SecondarySite:
    """A secondary set up with `secondary init` against a PrimarySite."""

    config: Path
    settings: SecondarySettings
    engine: Engine

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([GEO_SYNC, "--config", str(self.config), *args],
                              capture_output=True, text=True, check=check, timeout=120)

    def mirror(self, type_dir: str) -> Path:
        return self.settings.mirror_root / type_dir

    def status(self) -> dict[str, Any]:
        """What `geo-sync status --json` prints (the report, or the error and the verdict
        of the checks), made by the command's own function in this process: rigs poll
        status many times a test, and a `status` process is ~1.3 s of CPU, mostly
        start-up, taken from the daemons under test. tests/test_cli.py and
        tests/cli/ run the command itself."""
        return status_of(self.config)


def status_of(config: Path) -> dict[str, Any]:
    """`geo-sync --config CONFIG status --json`'s document, computed in this process."""
    # The settings loaded as the command loads them, without its logging set-up, which
    # would reconfigure this test process's logging.
    return site_status(CliContext(str(config), configures_logging=False)).report


def secondary_site(directory: Path, primary: PrimarySite, database_url: str | None,
                   broker_url: str = "embedded", **extra: object) -> SecondarySite:
    """`secondary init` for primary's registered secondary ``s1`` (trusting its test CA
    when it serves HTTPS, unless ``extra`` says otherwise)."""
    if primary.tls is not None:
        extra.setdefault("primary_ca_bundle", str(primary.tls.ca_cert))
    extra = {key: value for key, value in extra.items() if value is not None}
    config = init_secondary(directory, primary_url=primary.url, name=primary.secondary,
                            secret=primary.secret, database_url=database_url,
                            broker_url=broker_url, extra=dict(extra))
    settings = load_settings(config).require_secondary()
    return SecondarySite(config, settings, make_engine(settings.database_url, pooled=False))
