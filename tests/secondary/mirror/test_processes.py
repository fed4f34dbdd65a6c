"""Several `secondary serve` processes on one socket: each answers, SIGTERM stops
them all, and one that dies takes the command down non-zero (the supervisor
restarts it). SQLite only: the supervisor does not depend on the backend."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from geo_sync.secondary.runtime import open_runtime
from tests.secondary.mirror.world import (
    MirrorServer,
    mirror_server,
    publish,
    replicate,
    serving_children,
)
from tests.sites import SecondarySite, primary_site, secondary_site
from tests.steps import apply_events


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[MirrorServer, SecondarySite]]:
    with primary_site(tmp_path / "primary", None) as primary:
        secondary = secondary_site(tmp_path / "secondary", primary, None)
        runtime = open_runtime(secondary.settings)
        try:
            apply_events(runtime)
            publish(primary, "artifact", "created", "a.zip", b"artifact")
            replicate(runtime, "artifact")
        finally:
            runtime.close()
        with mirror_server(secondary, GEO_SYNC_SECONDARY__MIRROR__PROCESSES="2") as server:
            yield server, secondary
        secondary.engine.dispose()


def _serving(server: MirrorServer) -> list[tuple[int, str]]:
    """The serving children (``start`` waited for both to name themselves)."""
    children = serving_children(server)
    assert len(children) == 2
    return children


def test_two_processes_share_the_port_and_die_together(
    two_processes: tuple[MirrorServer, SecondarySite]
) -> None:
    server, _secondary = two_processes
    children = _serving(server)
    assert sorted(args.rsplit("(", 1)[1] for _, args in children) == [
        "process 1 of 2)", "process 2 of 2)"]
    for _ in range(6):  # keep-alive off: new connections, whichever process accepts
        headers, body, status = server.curl("/artifacts/a.zip", "-H", "Connection: close")
        assert (status, body, headers["x-geo-served-by"]) == (200, b"artifact", "mirror")
    assert server.process is not None
    subprocess.run(["kill", "-KILL", str(children[0][0])], check=True)
    assert server.process.wait(timeout=60) != 0  # not silently one process short
    assert not any(Path(f"/proc/{pid}").exists() for pid, _ in children)
    server.process = None


def test_sigterm_stops_every_process(
    two_processes: tuple[MirrorServer, SecondarySite]
) -> None:
    server, _secondary = two_processes
    children = _serving(server)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid, _ in children)
    server.process = None
