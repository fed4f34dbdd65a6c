"""`geo-sync status`: a verdict first, per-type shares, events seen and processed,
workers and cursor holder, in 80 columns; exit code and JSON follow the verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import update

from geo_sync.db import utcnow, write_transaction
from geo_sync.tracking.sync_rows import insert_ignore, new_row
from replicators.artifact import ArtifactRegistry
from tests.deployment import wait_for
from tests.sites import GEO_SYNC, PrimarySite, SecondarySite


def status(config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GEO_SYNC, "--config", str(config), "status", *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "COLUMNS": "80", **env})


def test_a_healthy_secondary_says_so_first_and_fits_80_columns(
        primary: PrimarySite, running: SecondarySite) -> None:
    (primary.storage("artifacts") / "a.bin").write_bytes(b"artifact")
    primary.cli("primary", "publish", "artifact", "created", "--path", "a.bin")
    wait_for(lambda: json.loads(status(running.config, "--json").stdout)["types"]
             ["artifact"]["synced"] == 1, "the artifact to be synced", 60)
    shown = status(running.config)
    lines = shown.stdout.splitlines()
    assert lines[0] == "Healthy", shown.stdout
    assert shown.returncode == 0
    assert max(len(line) for line in lines) <= 80, shown.stdout
    text = shown.stdout
    assert "synced   0 / total 0 (100.0%)" in text  # repositories: nothing to do
    assert "synced   1 / total 1 (100.0%)" in text  # the artifact
    assert "last seen      " in text and "last processed " in text
    assert "cursor holder  " in text and "(embedded)" in text
    report = json.loads(status(running.config, "--json").stdout)
    assert report["verdict"] == {"verdict": "Healthy", "exit_code": 0, "reasons": []}
    assert report["events"]["last_seen_id"] == report["events"]["last_processed_id"]
    assert report["cursor_holder"]["alive"] is True
    assert [w["alive"] for w in report["workers"]] == [True]


def test_failed_items_make_it_degraded_with_the_reason_and_exit_1(
        running: SecondarySite) -> None:
    with write_transaction(running.engine) as conn:
        insert_ignore(conn, ArtifactRegistry, [new_row("x", "x.bin")])
        # far in the future: the scheduler must not retry it during the test
        conn.execute(update(ArtifactRegistry).values(
            state="failed", last_error="disk on fire",
            retry_at=utcnow() + timedelta(days=1)))
    shown = status(running.config)
    assert shown.returncode == 1, shown.stdout
    assert shown.stdout.splitlines()[0] == "Degraded"
    assert "WARNING failed items: 1 (artifact 1)" in shown.stdout
    assert "synced   0 / total 1 (0.0%)" in shown.stdout
    assert "disk on fire" in shown.stdout


def test_json_is_json_even_when_the_database_is_down(secondary: SecondarySite) -> None:
    broken = ("postgresql+psycopg://nobody@127.0.0.1:1/none"
              if secondary.settings.database_url.startswith("postgresql")
              else "sqlite:////nonexistent-dir/x.db")
    shown = status(secondary.config, "--json", GEO_SYNC_SECONDARY__DATABASE_URL=broken)
    report = json.loads(shown.stdout)
    assert report["error"].startswith("database unreachable") and report["hint"]
    assert report["verdict"]["verdict"] == "Unhealthy"
    assert shown.returncode == 2 == report["verdict"]["exit_code"]


def test_json_is_json_even_without_a_config(tmp_path: Path) -> None:
    shown = status(tmp_path / "missing.toml", "--json")
    report = json.loads(shown.stdout)
    assert "does not exist" in report["error"]
    assert shown.returncode == 2


def test_a_primary_status_leads_with_its_verdict_and_exits_with_it(
        primary: PrimarySite) -> None:
    never = status(primary.config)
    assert never.returncode == 1 and never.stdout.splitlines()[0] == "Degraded"
    assert "WARNING secondary s1: never connected" in never.stdout
    with httpx.Client(base_url=primary.api, timeout=90) as client:
        assert client.get("/status", headers=primary.headers()).status_code == 200
    seen = status(primary.config, "--json")
    assert seen.returncode == 0
    assert json.loads(seen.stdout)["verdict"]["verdict"] == "Healthy"


def test_json_status_leaves_the_renderers_and_metrics_unloaded(
        secondary: SecondarySite) -> None:
    """Start-up is most of `status --json`: it loads no rich or pygments (tables;
    structlog and httpx would load them for their own renderers) and no
    prometheus_client (the heartbeat's gauge)."""
    unwanted = ("rich", "pygments", "prometheus_client")
    probe = ("import sys; from click.testing import CliRunner; "
             "from geo_sync.cli.main import cli; "
             f"CliRunner().invoke(cli, ['--config', {str(secondary.config)!r}, 'status', "
             "'--json']); "
             f"print(sorted(m for m in {unwanted!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "[]", done.stdout
