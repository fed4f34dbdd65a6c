"""How registered secondaries look from the primary: a secondary that never connected
is not called healthy, though it holds pruning back from the moment it is registered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from geo_sync.db import write_transaction
from geo_sync.primary.secondaries import add_secondary, set_enabled, statuses, touch
from tests.services import temporary_database
from tests.sites import primary_site

RETENTION = 3600


def _shown(engine: Engine, name: str) -> dict[str, object]:
    with engine.connect() as conn:
        return next(s.to_json() for s in statuses(conn, RETENTION) if s.name == name)


def test_a_secondary_that_never_connected_is_not_healthy_but_holds_pruning(
        primary_engine: Engine) -> None:
    with write_transaction(primary_engine) as conn:
        add_secondary(conn, "east")
    shown = _shown(primary_engine, "east")
    assert shown["healthy"] is False
    assert shown["state"] == "never_connected"
    assert shown["holds_pruning"] is True
    assert shown["last_seen_at"] is None


def test_a_secondary_becomes_healthy_once_it_is_seen_and_not_when_disabled(
        primary_engine: Engine) -> None:
    with write_transaction(primary_engine) as conn:
        add_secondary(conn, "east")
        touch(conn, "east")
    shown = _shown(primary_engine, "east")
    assert (shown["healthy"], shown["state"]) == (True, "connected")
    with write_transaction(primary_engine) as conn:
        set_enabled(conn, "east", False)
    shown = _shown(primary_engine, "east")
    assert (shown["healthy"], shown["state"], shown["holds_pruning"]) == (
        False, "disabled", False)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_primary_status_says_never_connected_and_what_to_do(tmp_path: Path,
                                                            backend: str) -> None:
    def scenario(url: str | None) -> None:
        with primary_site(tmp_path / "p", url, serve=False) as site:
            # status exits with its verdict: a secondary that never connected degrades it.
            shown = site.cli("status", check=False)
            row = next(line for line in shown.stdout.splitlines() if "s1" in line)
            assert "never connected" in row
            assert "True" not in row
            answered = site.cli("status", "--json", check=False)
            report = json.loads(answered.stdout)
            assert report["secondaries"][0]["healthy"] is False
            assert shown.returncode == answered.returncode == report["verdict"]["exit_code"] > 0

    if backend == "sqlite":
        scenario(None)
    else:
        with temporary_database() as url:
            scenario(url)
