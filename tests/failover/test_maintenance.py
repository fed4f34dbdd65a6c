"""Maintenance mode and fencing refuse publishing on every path, on both backends."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from geo_sync.db import write_transaction
from geo_sync.errors import SiteReadOnly
from geo_sync.primary import hooks, site_state
from geo_sync.primary.publish import Change, publish
from geo_sync.primary.scan import apply_plan, plan_scan
from geo_sync.workload import git
from tests.sites import PrimarySite

CHANGE = Change("artifact", "created", "a/b.zip", size=3, checksum="0" * 64)


def _set(engine: Engine, on: bool, reason: str | None = "upgrade") -> None:
    with write_transaction(engine) as conn:
        site_state.set_maintenance(conn, on, reason)


def test_publishing_is_refused_in_maintenance_and_allowed_after(primary_engine: Engine
                                                                ) -> None:
    _set(primary_engine, True)
    with pytest.raises(SiteReadOnly, match=r"maintenance mode \(upgrade\)"), \
            write_transaction(primary_engine) as conn:
        publish(conn, CHANGE)
    _set(primary_engine, False)
    with write_transaction(primary_engine) as conn:
        assert publish(conn, CHANGE) > 0


def test_a_demoted_site_refuses_publishing_and_names_the_new_primary(primary_engine: Engine
                                                                     ) -> None:
    with write_transaction(primary_engine) as conn:
        state = site_state.demote(conn, "https://new.example")
    assert state.epoch == 1 and state.demoted
    with pytest.raises(SiteReadOnly, match=r"this site \(epoch 1\) was demoted; the primary is now "
                       r"https://new\.example"), write_transaction(primary_engine) as conn:
        publish(conn, CHANGE)


def test_the_sql_function_refuses_with_its_own_sqlstate(pg_engine: Engine) -> None:
    _set(pg_engine, True)
    with pytest.raises(DBAPIError, match=r"maintenance mode") as info, \
            pg_engine.begin() as conn:
        conn.execute(text("SELECT geo_publish('artifact', 'created', 'x.zip')"))
    assert getattr(info.value.orig, "sqlstate", None) == site_state.MAINTENANCE_SQLSTATE
    with pg_engine.begin() as conn:
        site_state.demote(conn, "https://new.example")
    with pytest.raises(DBAPIError, match=r"demoted") as info, pg_engine.begin() as conn:
        conn.execute(text("SELECT geo_publish('artifact', 'created', 'x.zip')"))
    assert getattr(info.value.orig, "sqlstate", None) == site_state.DEMOTED_SQLSTATE


def test_scan_is_refused_in_maintenance(primary_engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "artifacts" / "p").mkdir(parents=True)
    (tmp_path / "artifacts" / "p" / "x.zip").write_bytes(b"abc")
    plan = plan_scan(primary_engine, tmp_path)
    assert plan.changes
    _set(primary_engine, True)
    with pytest.raises(SiteReadOnly):
        apply_plan(primary_engine, plan)


def test_the_cli_refuses_publishing_and_pushes_in_maintenance(primary: PrimarySite,
                                                              tmp_path: Path) -> None:
    storage = primary.settings.storage_root
    (storage / "artifacts" / "x.zip").write_bytes(b"abc")
    repo = storage / "repositories" / "g" / "r.git"
    git("init", "-q", "--bare", str(repo))
    primary.cli("primary", "install-hooks")
    on = primary.cli("primary", "maintenance", "on", "--reason", "moving racks")
    assert "MAINTENANCE" in on.stdout and "moving racks" in on.stdout
    publish_x = ("primary", "publish", "artifact", "created", "--path", "x.zip")
    refused = primary.cli(*publish_x, check=False)
    assert refused.returncode == 1
    assert "maintenance mode (moving racks)" in refused.stderr
    assert "Traceback" not in refused.stderr
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work))
    (work / "f").write_text("x")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    push = subprocess.run(["git", "push", str(repo), "main"], cwd=work, capture_output=True,
                          text=True, check=False)
    assert push.returncode != 0 and "push refused" in push.stderr
    assert "moving racks" in push.stderr
    assert "maintenance" in primary.cli("primary", "maintenance", "status").stdout.lower()
    primary.cli("primary", "maintenance", "off")
    assert not (storage / site_state.READ_ONLY_MARKER).exists()
    push = subprocess.run(["git", "push", str(repo), "main"], cwd=work, capture_output=True,
                          text=True, check=False)
    assert push.returncode == 0, push.stderr
    assert primary.cli(*publish_x).returncode == 0


def test_the_api_keeps_serving_reads_in_maintenance_and_sends_its_epoch(
        primary: PrimarySite) -> None:
    with primary.client() as client:
        on = client.post("/maintenance", json={"on": True, "reason": "drain"},
                         headers=primary.headers())
        assert on.status_code == 200 and on.json()["maintenance"] is True
        head = client.get("/events/head", headers=primary.headers())
        assert head.status_code == 200 and head.headers["x-geo-epoch"] == "1"
        bad = client.post("/maintenance", json={"on": "yes"}, headers=primary.headers())
        assert bad.status_code == 400
        fence = client.post("/fence", json={"new_primary_url": "http://new:1", "epoch": 2},
                            headers=primary.headers())
        assert fence.status_code == 200 and fence.json()["previous_epoch"] == 1
        refused = client.get("/events/head", headers=primary.headers())
        assert refused.status_code == 409
        assert refused.headers["x-geo-new-primary"] == "http://new:1"
        assert refused.headers["x-geo-epoch"] == "1"  # a fenced site keeps its epoch
    assert hooks.PRE_MARKER
