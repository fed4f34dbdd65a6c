"""`resync` asks before a bulk resync and never re-queues everything by default;
`verify` with nothing to do says so instead of drawing an empty bar."""

from __future__ import annotations

import os
import pty
import subprocess
import time

from sqlalchemy import select, update

from geo_sync.db import write_transaction
from geo_sync.tracking.sync_rows import insert_ignore, new_row
from replicators.artifact import ArtifactRegistry
from tests.sites import GEO_SYNC, SecondarySite

PATHS = [f"pipelines/{n}/artifacts.zip" for n in range(5)]


def _seed_synced(site: SecondarySite) -> None:
    with write_transaction(site.engine) as conn:
        insert_ignore(conn, ArtifactRegistry, [new_row(p, p) for p in PATHS])
        conn.execute(update(ArtifactRegistry).values(state="synced"))


def _states(site: SecondarySite) -> list[str]:
    with site.engine.connect() as conn:
        return list(conn.execute(select(ArtifactRegistry.state)).scalars())


def test_resync_without_a_selection_is_refused_and_changes_nothing(
        secondary: SecondarySite) -> None:
    _seed_synced(secondary)
    for args in (("resync",), ("resync", "artifact")):
        result = secondary.cli(*args, check=False)
        assert result.returncode == 1
        assert "--failed or --all" in result.stderr
    assert set(_states(secondary)) == {"synced"}


def test_resync_all_from_a_script_needs_yes(secondary: SecondarySite) -> None:
    _seed_synced(secondary)
    refused = secondary.cli("resync", "--all", check=False)
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    assert set(_states(secondary)) == {"synced"}
    done = secondary.cli("resync", "--all", "--yes")
    assert f"{len(PATHS)} item(s) queued for resync" in done.stdout
    assert set(_states(secondary)) == {"pending"}


def _on_a_terminal(site: SecondarySite, answer: bytes, *args: str) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as its stdin/stdout and type ``answer``."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([GEO_SYNC, "--config", str(site.config), *args],
                               stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 120
    answered = False
    while process.poll() is None and time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        output += chunk
        if not answered and b"[y/N]" in output:
            os.write(leader, answer)
            answered = True
    process.wait(timeout=30)
    try:
        while chunk := os.read(leader, 4096):
            output += chunk
    except OSError:
        pass
    os.close(leader)
    return process.returncode, output.decode(errors="replace")


def test_resync_all_on_a_terminal_asks_and_no_leaves_everything_alone(
        secondary: SecondarySite) -> None:
    _seed_synced(secondary)
    code, output = _on_a_terminal(secondary, b"n\n", "resync", "--all")
    assert "resync 5 item(s)? [y/N]" in output
    assert code == 1
    assert set(_states(secondary)) == {"synced"}
    code, output = _on_a_terminal(secondary, b"y\n", "resync", "--all")
    assert code == 0, output
    assert set(_states(secondary)) == {"pending"}


def test_resync_failed_with_nothing_failed_says_so(secondary: SecondarySite) -> None:
    _seed_synced(secondary)
    result = secondary.cli("resync", "--failed")
    assert "nothing to resync" in result.stdout


def test_verify_failed_with_nothing_to_do_draws_no_bar(secondary: SecondarySite) -> None:
    _seed_synced(secondary)
    result = secondary.cli("verify", "--failed")
    assert "nothing to verify" in result.stdout
    assert "%" not in result.stdout and "━" not in result.stdout
