"""Where the fault tests' Toxiproxy is: a real one named by ``TOXIPROXY_URL``, or our own
compatible server (tests/faults/proxy_server.py) started for the session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from toxiproxy import Toxiproxy

from tests.sites import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ToxiproxyApi:
    """A Toxiproxy API; ``ours`` when it is tests/faults/proxy_server.py (which also has
    the ``http_error`` extension)."""

    host: str
    port: int
    ours: bool

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> Toxiproxy:
        """A toxiproxy-python client pointed at this API (its address is process-global)."""
        server = Toxiproxy()
        server.update_api_consumer(self.host, self.port)
        return server


@contextmanager
def toxiproxy_api() -> Iterator[ToxiproxyApi]:
    """``TOXIPROXY_URL``'s Toxiproxy, or our own server in a process of its own."""
    named = os.environ.get("TOXIPROXY_URL")
    if named:
        parts = urlsplit(named)
        yield ToxiproxyApi(parts.hostname or "127.0.0.1", parts.port or 8474, ours=False)
        return
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.faults.proxy_server",
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield ToxiproxyApi("127.0.0.1", port, ours=True)
    finally:
        proc.kill()
        proc.wait()
