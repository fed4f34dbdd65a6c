"""A primary, a secondary driven step by step in this process, and the secondary's
mirror server (`geo-sync secondary serve`) in its own process: what the mirror
server tests run real git and curl against."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from geo_sync.db import write_transaction
from geo_sync.primary.publish import Change
from geo_sync.primary.publish import publish as publish_change
from geo_sync.secondary.runtime import Runtime
from geo_sync.secondary.tasks import sync_items
from geo_sync.tracking import verification_rows
from replicators.type_map import replicator_for
from tests.deployment import wait_for
from tests.gitutil import GIT_ENV
from tests.sites import (
    GEO_SYNC,
    PrimarySite,
    SecondarySite,
    free_port,
    stop_process,
    wait_for_http,
    wait_for_port,
)
from tests.steps import apply_events
from verification.verifier import verify_items


@dataclass
class MirrorServer:
    """A running `geo-sync secondary serve`, and a reader's token for it."""

    secondary: SecondarySite
    port: int
    scheme: str = "http"
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    token: str = ""

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        # One process unless a test asks for more: each costs a Python start-up.
        env = {**os.environ, "GEO_SYNC_SECONDARY__MIRROR__LISTEN_PORT": str(self.port),
               "GEO_SYNC_SECONDARY__MIRROR__PROCESSES": "1", **self.env}
        self.process = subprocess.Popen(
            [GEO_SYNC, "--config", str(self.secondary.config), "secondary", "serve"], env=env)
        wait_for_port(self.port, self.process)
        # With several processes the supervisor binds the port before its children
        # have started (each imports and opens its engine: seconds on a loaded box),
        # and connections wait in the backlog meanwhile: ready is when one answers and
        # every child has named itself (it does so just before it serves).
        wait_for_http(f"{self.url}/-/health", self.process, verify=False)
        processes = int(env["GEO_SYNC_SECONDARY__MIRROR__PROCESSES"])
        if processes > 1:
            wait_for(lambda: len(serving_children(self)) == processes,
                     f"{processes} serving processes", timeout=120)

    def stop(self) -> None:
        stop_process(self.process)

    def curl(self, path: str, *args: str, token: str | None = None,
             check: bool = True) -> tuple[dict[str, str], bytes, int]:
        """(headers, body, status) of ``curl`` at ``path``, as a runner would ask."""
        auth = ["-H", f"Authorization: Bearer {token or self.token}"] if (
            token or self.token) and token != "" else []
        dump = [] if "-I" in args else ["-D", "-"]  # -I prints the headers itself
        out = subprocess.run(
            ["curl", "-sS", *dump, "--max-time", "60", *auth, *args,
             f"{self.url}{path}"], capture_output=True, check=check, timeout=120)
        head, _, body = out.stdout.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1]) if lines and lines[0] else 0
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        return headers, body, status

    def git(self, *args: str, cwd: Path | None = None, check: bool = True,
            token: str | None = None, extra_env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Real git against the mirror, with the reader's token as a Bearer header."""
        used = self.token if token is None else token
        config = ["-c", f"http.extraHeader=Authorization: Bearer {used}"] if used else []
        env = {**os.environ, **GIT_ENV, "GIT_TERMINAL_PROMPT": "0", **(extra_env or {})}
        return subprocess.run(["git", *config, *args], cwd=cwd, env=env, capture_output=True,
                              text=True, check=check, timeout=120)

    def git_url(self, repo: str) -> str:
        return f"{self.url}/git/{repo}"


def serving_children(server: MirrorServer) -> list[tuple[int, str]]:
    """The serving children of a several-process server that have named themselves."""
    assert server.process is not None
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(server.process.pid)],
                         capture_output=True, text=True, check=False).stdout
    rows = [line.strip().split(None, 1) for line in out.splitlines() if line.strip()]
    return [(int(pid), args) for pid, args in rows if "secondary serve" in args]


@contextmanager
def mirror_server(secondary: SecondarySite, **env: str) -> Iterator[MirrorServer]:
    server = MirrorServer(secondary, free_port(), env=dict(env))
    if "GEO_SYNC_SECONDARY__MIRROR__TLS_CERT_FILE" in env:
        server.scheme = "https"
    if env.get("GEO_SYNC_SECONDARY__MIRROR__ALLOW_ANONYMOUS") != "true":
        server.token = secondary.cli("secondary", "add-reader", f"runner{server.port}"
                                     ).stdout.strip()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def publish(primary: PrimarySite, type_name: str, event: str, path: str,
            content: bytes | None = None, **fields: Any) -> None:
    """Publish a change on the primary (a blob's bytes written first when given)."""
    if content is not None:
        full = primary.storage(replicator_for(type_name).storage_dir) / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(content)
        fields = {"size": len(content), "checksum": hashlib.sha256(content).hexdigest()}
    with write_transaction(primary.engine) as conn:
        publish_change(conn, Change(type_name, event, path, **fields))


def replicate(runtime: Runtime, type_name: str) -> None:
    """Apply every event, sync every pending row, then verify every synced row until
    it is verified (the primary takes a repository's checksum within seconds)."""
    apply_events(runtime)
    replicator = replicator_for(type_name)
    model = replicator.registry_table
    with runtime.engine.connect() as conn:
        ids = list(conn.execute(select(model.id).where(model.state == "pending")).scalars())
    sync_items(runtime, type_name, ids)

    def verified() -> bool:
        todo = request_verification(runtime, type_name, unverified_only=True)
        if not todo:
            return True
        verify_items(runtime, type_name, todo)
        return False

    wait_for(verified, f"every synced {type_name} to be verified", timeout=90)


def request_verification(runtime: Runtime, type_name: str, *,
                         unverified_only: bool = False) -> list[int]:
    """Ask for the synced rows of ``type_name`` (only those not verified yet) to be
    verified now; their ids."""
    model = replicator_for(type_name).registry_table
    synced = model.state == "synced"
    where = (synced, model.verification_state != "succeeded") if unverified_only else (synced,)
    with write_transaction(runtime.engine) as conn:
        todo = list(conn.execute(select(model.id).where(*where)).scalars())
        if todo:
            verification_rows.request(conn, model, todo)
    return todo
