"""Real sites for the tests: a primary set up with `primary init` and served by
`geo-sync primary serve` in its own process."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine

from geo_sync.auth import issue_token
from geo_sync.db import make_engine, write_transaction
from geo_sync.primary.secondaries import add_secondary
from geo_sync.primary.site import init_primary
from geo_sync.secondary.site import init_secondary
from geo_sync.settings import PrimarySettings, SecondarySettings, load_settings
from geo_sync.toml_out import dumps
from tests.tls import TestCA

GEO_SYNC = str(Path(sys.executable).parent / "geo-sync")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline: float = 30.0) -> None:
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
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def start(self) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        env = dict(os.environ, GEO_SYNC_PRIMARY__LISTEN_PORT=str(port))
        self.process = subprocess.Popen(
            [GEO_SYNC, "--config", str(self.config), "primary", "serve",
             "--processes", str(self.processes)], env=env
        )
        wait_for_port(port, self.process)


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
    engine = make_engine(settings.database_url)
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
    return SecondarySite(config, settings, make_engine(settings.database_url))
