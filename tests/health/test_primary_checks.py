"""`geo-sync check` on a primary, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update

from geo_sync.db import utcnow, write_transaction
from geo_sync.primary.models import Secondary
from geo_sync.primary.secondaries import add_secondary
from tests.health.conftest import run_check
from tests.sites import PrimarySite


def test_a_primary_whose_secondary_called_recently_is_healthy(primary: PrimarySite) -> None:
    with httpx.Client(base_url=primary.api, timeout=90) as client:
        assert client.get("/status", headers=primary.headers()).status_code == 200
    checked = run_check(primary.config)
    assert checked.code == 0, checked.text
    assert [c["check"] for c in checked.report["checks"]] == [
        "config", "primary database", "storage", "site", "secondary s1", "event log", "checksummer"]
    assert checked.report["role"] == "primary"


def test_a_secondary_that_never_connected_or_went_silent_is_named(
        primary: PrimarySite) -> None:
    with write_transaction(primary.engine) as conn:
        add_secondary(conn, "never")
        add_secondary(conn, "silent")
        conn.execute(update(Secondary).where(Secondary.name.in_(["s1", "silent"]))
                     .values(last_seen_at=utcnow() - timedelta(hours=2)))
    checked = run_check(primary.config)
    never = checked.result("secondary never")
    assert never["status"] == "WARNING" and never["message"] == "never connected"
    assert checked.level("secondary silent") == "CRITICAL"
    assert "geo-sync check" in checked.result("secondary silent")["hint"]
    assert checked.code == 2


def test_a_disabled_secondary_is_not_a_problem(primary: PrimarySite) -> None:
    with write_transaction(primary.engine) as conn:
        conn.execute(update(Secondary).values(enabled=False))
    checked = run_check(primary.config)
    assert checked.result("secondary s1") == {"check": "secondary s1", "status": "OK",
                                              "message": "disabled", "hint": None}


def test_event_log_size_is_measured_against_its_threshold(primary: PrimarySite) -> None:
    with httpx.Client(base_url=primary.api, timeout=90) as client:
        client.get("/status", headers=primary.headers())
    primary.cli("primary", "publish", "artifact", "created", "--path", "a.bin",
                "--no-inspect", "--size", "1", "--checksum", "0" * 64)
    checked = run_check(primary.config, GEO_SYNC_PRIMARY__CHECKS__EVENT_LOG_WARNING_EVENTS="1")
    assert checked.level("event log") == "WARNING"
    assert checked.result("event log")["message"] == "1 event(s) retained"
    assert checked.code == 1


def test_an_unreachable_database_is_critical_and_skips_what_needs_it(
        primary: PrimarySite) -> None:
    broken = ("postgresql+psycopg://nobody@127.0.0.1:1/none"
              if primary.settings.database_url.startswith("postgresql")
              else "sqlite:////nonexistent-dir/x.db")
    checked = run_check(primary.config, GEO_SYNC_PRIMARY__DATABASE_URL=broken)
    assert checked.level("primary database") == "CRITICAL"
    assert checked.level("event log") == "UNKNOWN"
    assert checked.code == 2
